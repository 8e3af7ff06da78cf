#!/usr/bin/env bash
# CPU engine benchmark (`pnpm bench`): builds crates/dart-bench in release and
# writes bench/results/engine-cpu.json (GEMM GFLOPS, forward+backward+step
# tokens/s, DART routing overhead). When a torch + transformers + peft venv is
# found (scripts/.venv-ref, see scripts/requirements-ref.txt) the same shapes
# are also timed with torch (scripts/bench/torch_ref.py); without it the result
# records `torch: null` and the reason. torch is never needed by the product.
#
# Environment:
#   DART_BENCH_OUT      output file (default bench/results/engine-cpu.json)
#   DART_BENCH_THREADS  threads for both engines (default: nproc)
#   DART_BENCH_PYTHON   python with torch/transformers/peft (default scripts/.venv-ref/bin/python)
#   DART_BENCH_NO_TORCH=1  skip the torch reference
#   DART_BENCH_QUICK=1  one timed repetition, short GEMM timing (smoke test)
#   DART_BENCH_CPU_CLASS  native (default: what this CPU has) or avx2: the
#       paths of an AVX2 + FMA machine on any x86 CPU. avx2 builds the
#       benchmarks without the `avx512` feature (gemm without x86-v4, none
#       of our AVX-512 kernels; in target/avx2-class), sets
#       DART_CPU_NO_AVX512=1, restricts the references to AVX2 too
#       (OPENBLAS_CORETYPE=Haswell for numpy, ATEN_CPU_CAPABILITY=avx2,
#       MKL_ENABLE_INSTRUCTIONS=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2 for torch),
#       writes engine-cpu-avx2.json and generate-avx2.json, and skips the
#       search, wgpu and RL step benchmarks (set DART_BENCH_NO_*=0 to keep one).
#       Every result records cpu_class and the kernel path of each GEMM.
#
# GEMM reference: numpy.matmul (OpenBLAS) at the same shapes and threads,
# timed in the same run before ours (scripts/bench/numpy_gemm.py, the same
# python); recorded as numpy_gflops / ratio_vs_numpy per shape.
#
# Then the generation benchmark (crates/dart-bench/src/bin/generate.rs) writes
# bench/results/generate.json: decode tokens/s at batch 1/16/64, prefill
# tokens/s and, with the same venv, transformers `generate` timed in the same
# run (scripts/bench/torch_generate.py) as ratio_vs_transformers.
#   DART_BENCH_GENERATE_OUT  output file (default bench/results/generate.json)
#   DART_BENCH_NO_GENERATE=1 skip the generation benchmark
#   DART_BENCH_ONLY_GENERATE=1 run only the generation benchmark
#
# Then the search benchmark (crates/dart-bench/src/bin/search.rs) writes
# bench/results/search.json: a deterministic synthetic corpus in Search-R1's
# layout (1M passages, wiki-like lengths, Zipf vocabulary; 20k with
# DART_BENCH_QUICK=1) and 1024 queries are generated in a temporary folder,
# the built-in BM25 index (crates/dart-search) is built (build seconds,
# passages/s, index bytes, peak RSS) and queried at batch 1 and 64 (latency
# p50/p99, queries/s), with a linear extrapolation to the 21M passages of
# wiki-18. When the python above has bm25s and PyStemmer, scripts/bench/bm25_ref.py
# indexes the same corpus and runs the same queries with bm25s first (same
# run): queries/s ratios and the top-10 overlap against the targets (overlap
# >= 0.95, queries/s >= 2x); else recorded as skipped with the reason.
# pyserini is recorded as skipped unless a Java 21 runtime is there.
# The corpus is written under TMPDIR (about 0.75 GB at 1M passages).
#   DART_BENCH_SEARCH_OUT      output file (default bench/results/search.json)
#   DART_BENCH_NO_SEARCH=1     skip the search benchmark
#   DART_BENCH_ONLY_SEARCH=1   run only the search benchmark
#   DART_BENCH_SEARCH_PASSAGES passages of the synthetic corpus (default 1000000)
#   DART_BENCH_NO_SEARCH_REF=1 skip the bm25s reference
#
# Then the wgpu benchmark (crates/dart-bench/src/bin/engine_wgpu.rs) writes
# bench/results/engine-wgpu.json: the adapter (name, type, backend, driver),
# GEMM GFLOPS through the wgpu backend at the shapes of engine-cpu.json and at
# 4096^3, and forward+backward+step tokens/s of the wgpu Engine for the
# configs of engine-cpu.json, each next to the cpu engine in the same run.
# On an adapter of type Cpu (Mesa lavapipe) 4096^3 and the SmolLM2-135M shape
# are recorded as skipped unless DART_BENCH_FULL=1. When the python above (or
# python3) has torch with torch.cuda.is_available(), scripts/bench/torch_gpu_ref.py
# times torch fp32 matmul (TF32 off) and transformers+peft fwd+bwd on cuda in
# the same run, recorded as ratios; else recorded as skipped with the reason.
#   DART_BENCH_WGPU_OUT   output file (default bench/results/engine-wgpu.json)
#   DART_BENCH_NO_WGPU=1  skip the wgpu benchmark
#   DART_BENCH_ONLY_WGPU=1  run only the wgpu benchmark
#   DART_BENCH_FULL=1     run the 4096^3 GEMM and SmolLM2 shape on a Cpu-type adapter too
#   DART_WGPU_ADAPTER     pin the adapter (substring of its name, e.g. llvmpipe)
#
# Then the WASM benchmark (ts/scripts/bench-wasm.ts) writes
# bench/results/wasm.json: the WASM build's forward+backward and decode
# tokens/s on world/model next to the native addon's (1 thread, and all
# threads) in the same run, as ratios, and the .wasm file's size.
#   DART_BENCH_WASM_OUT   output file (default bench/results/wasm.json)
#   DART_BENCH_NO_WASM=1  skip it
#
# Then the RL step benchmark (ts/scripts/bench-rl-step.ts) writes
# bench/results/rl-step.json: one full GRPO step of the training loop on the
# built-in world (world/model, world/train.jsonl, searches over
# world/corpus.jsonl; default config, 8 prompts x 8 samples, no validation),
# 1 warm-up + 4 timed steps, split into rollout and update with tokens/s of
# each; and, when the python above has trl (pinned in
# scripts/requirements-ref.txt), TRL's GRPOTrainer with one peft LoRA on the
# same model folder, prompts, group size and lengths (single-turn: TRL cannot
# call our search tool) timed in the same run (scripts/bench/trl_grpo.py), as
# ratios per step (target 3x) and per generated token; else recorded as
# skipped with the reason. About 5-10 minutes on 2 cores.
#   DART_BENCH_RL_STEP_OUT      output file (default bench/results/rl-step.json)
#   DART_BENCH_NO_RL_STEP=1     skip the RL step benchmark
#   DART_BENCH_ONLY_RL_STEP=1   run only the RL step benchmark
#   DART_BENCH_NO_TRL=1         skip the TRL reference (also DART_BENCH_NO_TORCH=1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# RL step benchmark only (the section at the end of this file, in its own script).
if [ "${DART_BENCH_ONLY_RL_STEP:-0}" = 1 ]; then exec bash scripts/bench/rl_step.sh; fi
threads="${DART_BENCH_THREADS:-$(nproc)}"
py="${DART_BENCH_PYTHON:-scripts/.venv-ref/bin/python}"
quick=()
[ "${DART_BENCH_QUICK:-0}" = 1 ] && quick=(--quick)
only_search="${DART_BENCH_ONLY_SEARCH:-0}"

cpu_class="${DART_BENCH_CPU_CLASS:-native}"
features=()
suffix=""
case "$cpu_class" in
  native) ;;
  avx2)
    features=(--no-default-features)
    suffix="-avx2"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/avx2-class"
    export DART_CPU_NO_AVX512=1 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
    export DART_BENCH_NO_SEARCH="${DART_BENCH_NO_SEARCH:-1}" DART_BENCH_NO_WGPU="${DART_BENCH_NO_WGPU:-1}" DART_BENCH_NO_RL_STEP="${DART_BENCH_NO_RL_STEP:-1}" DART_BENCH_NO_WASM="${DART_BENCH_NO_WASM:-1}"
    ;;
  *) echo "DART_BENCH_CPU_CLASS=$cpu_class: expected native or avx2" >&2; exit 2 ;;
esac
out="${DART_BENCH_OUT:-bench/results/engine-cpu$suffix.json}"

echo "== building dart-bench (release${features[*]:+, ${features[*]}})"
cargo build --release --quiet -p dart-bench "${features[@]}"
bin="${CARGO_TARGET_DIR:-target}/release/dart-bench"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Why the torch reference cannot run (empty when it can).
torch_skip=""
if [ "$only_search" = 1 ]; then
  torch_skip="not needed (DART_BENCH_ONLY_SEARCH=1)"
elif [ "${DART_BENCH_NO_TORCH:-0}" = 1 ]; then
  torch_skip="skipped (DART_BENCH_NO_TORCH=1)"
elif [ ! -x "$py" ]; then
  torch_skip="no python at $py (create scripts/.venv-ref from scripts/requirements-ref.txt, or set DART_BENCH_PYTHON)"
elif ! "$py" -c 'import torch, transformers, peft' > /dev/null 2> "$tmp/import.err"; then
  torch_skip="$py cannot import torch/transformers/peft: $(tail -n 1 "$tmp/import.err")"
fi

if [ "${DART_BENCH_ONLY_GENERATE:-0}" != 1 ] && [ "${DART_BENCH_ONLY_WGPU:-0}" != 1 ] && [ "$only_search" != 1 ]; then
  "$bin" configs "${quick[@]}" > "$tmp/configs.json"
  torch_args=()
  if [ -n "$torch_skip" ]; then
    torch_args=(--torch-null "$torch_skip")
  else
    echo "== torch + peft reference ($py, $threads threads)"
    if "$py" scripts/bench/torch_ref.py --configs "$tmp/configs.json" --threads "$threads" --out "$tmp/torch.json"; then
      torch_args=(--torch-json "$tmp/torch.json")
    else
      torch_args=(--torch-null "scripts/bench/torch_ref.py exited with status $?")
    fi
  fi

  numpy_args=()
  if [ ! -x "$py" ]; then
    numpy_args=(--numpy-null "no python at $py (create scripts/.venv-ref from scripts/requirements-ref.txt, or set DART_BENCH_PYTHON)")
  else
    echo "== numpy GEMM reference ($py, $threads threads${OPENBLAS_CORETYPE:+, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE})"
    if OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" "$py" scripts/bench/numpy_gemm.py --configs "$tmp/configs.json" --threads "$threads" --out "$tmp/numpy.json" "${quick[@]}"; then
      numpy_args=(--numpy-json "$tmp/numpy.json")
    else
      numpy_args=(--numpy-null "scripts/bench/numpy_gemm.py exited with status $?")
    fi
  fi

  echo "== dart-core engine"
  "$bin" run --out "$out" --threads "$threads" "${quick[@]}" "${torch_args[@]}" "${numpy_args[@]}"
fi

if [ "${DART_BENCH_NO_GENERATE:-0}" != 1 ] && [ "${DART_BENCH_ONLY_WGPU:-0}" != 1 ] && [ "$only_search" != 1 ]; then
  gen="${CARGO_TARGET_DIR:-target}/release/generate"
  gen_out="${DART_BENCH_GENERATE_OUT:-bench/results/generate$suffix.json}"
  "$gen" configs "${quick[@]}" > "$tmp/gen-configs.json"
  gen_args=()
  if [ -n "$torch_skip" ]; then
    gen_args=(--torch-null "$torch_skip")
  else
    echo "== transformers generate reference ($py, $threads threads)"
    if "$py" scripts/bench/torch_generate.py --configs "$tmp/gen-configs.json" --threads "$threads" --out "$tmp/torch-gen.json"; then
      gen_args=(--torch-json "$tmp/torch-gen.json")
    else
      gen_args=(--torch-null "scripts/bench/torch_generate.py exited with status $?")
    fi
  fi
  echo "== dart-core generate"
  "$gen" run --out "$gen_out" --threads "$threads" "${quick[@]}" "${gen_args[@]}"
fi

if [ "${DART_BENCH_NO_SEARCH:-0}" != 1 ] && [ "${DART_BENCH_ONLY_GENERATE:-0}" != 1 ] && [ "${DART_BENCH_ONLY_WGPU:-0}" != 1 ]; then
  sb="${CARGO_TARGET_DIR:-target}/release/search"
  s_out="${DART_BENCH_SEARCH_OUT:-bench/results/search.json}"
  s_dir="$tmp/search"
  s_corpus=()
  [ -n "${DART_BENCH_SEARCH_PASSAGES:-}" ] && s_corpus=(--passages "$DART_BENCH_SEARCH_PASSAGES")
  echo "== search: synthetic corpus"
  "$sb" corpus --dir "$s_dir" "${quick[@]}" "${s_corpus[@]}"
  s_args=()
  if [ "${DART_BENCH_NO_SEARCH_REF:-0}" = 1 ]; then
    s_args=(--ref-null "skipped (DART_BENCH_NO_SEARCH_REF=1)")
  elif [ ! -x "$py" ]; then
    s_args=(--ref-null "no python at $py (create scripts/.venv-ref from scripts/requirements-ref.txt, or set DART_BENCH_PYTHON)")
  elif ! "$py" -c 'import bm25s, Stemmer' > /dev/null 2> "$tmp/bm25s.err"; then
    s_args=(--ref-null "$py cannot import bm25s/Stemmer (pip install bm25s PyStemmer, pinned in scripts/requirements-ref.txt): $(tail -n 1 "$tmp/bm25s.err")")
  else
    echo "== bm25s reference ($py, $threads threads)"
    if "$py" scripts/bench/bm25_ref.py --dir "$s_dir" --threads "$threads" --out "$tmp/bm25s.json"; then
      s_args=(--ref-json "$tmp/bm25s.json")
    else
      s_args=(--ref-null "scripts/bench/bm25_ref.py exited with status $?")
    fi
  fi
  echo "== dart-search index"
  "$sb" run --dir "$s_dir" --out "$s_out" --threads "$threads" "${s_args[@]}"
  rm -rf "$s_dir"
fi

if [ "${DART_BENCH_NO_WGPU:-0}" != 1 ] && [ "${DART_BENCH_ONLY_GENERATE:-0}" != 1 ] && [ "$only_search" != 1 ]; then
  ew="${CARGO_TARGET_DIR:-target}/release/engine_wgpu"
  ew_out="${DART_BENCH_WGPU_OUT:-bench/results/engine-wgpu.json}"
  "$ew" configs "${quick[@]}" > "$tmp/wgpu-configs.json"
  # The torch CUDA reference: the ref venv's python, else python3.
  gpy="$py"
  [ -x "$gpy" ] || gpy="$(command -v python3 || true)"
  ew_args=()
  if [ "${DART_BENCH_NO_TORCH:-0}" = 1 ]; then
    ew_args=(--torch-null "skipped (DART_BENCH_NO_TORCH=1)")
  elif [ -z "$gpy" ]; then
    ew_args=(--torch-null "no python (set DART_BENCH_PYTHON to one with torch+CUDA, transformers and peft)")
  elif cuda="$("$gpy" -c 'import torch; print(torch.cuda.is_available())' 2> "$tmp/cuda.err")"; [ "$cuda" != True ]; then
    if [ "$cuda" = False ]; then
      ew_args=(--torch-null "skipped: torch.cuda.is_available() is False ($gpy): no CUDA GPU here")
    else
      ew_args=(--torch-null "skipped: $gpy cannot import torch: $(tail -n 1 "$tmp/cuda.err")")
    fi
  else
    echo "== torch CUDA reference ($gpy: fp32 matmul with TF32 off, transformers+peft fwd+bwd)"
    if "$gpy" scripts/bench/torch_gpu_ref.py --configs "$tmp/wgpu-configs.json" --out "$tmp/torch-gpu.json"; then
      ew_args=(--torch-json "$tmp/torch-gpu.json")
    else
      ew_args=(--torch-null "scripts/bench/torch_gpu_ref.py exited with status $?")
    fi
  fi
  echo "== dart-core wgpu engine"
  "$ew" run --out "$ew_out" --threads "$threads" "${quick[@]}" "${ew_args[@]}"
fi

# ---------------------------------------------------------------------------
# WASM benchmark (bench/results/wasm.json): the WASM build's fwd+bwd and
# decode tokens/s next to the native addon's in the same run, and the .wasm size.
if [ "${DART_BENCH_NO_WASM:-0}" != 1 ] && [ "${DART_BENCH_ONLY_GENERATE:-0}" != 1 ] && [ "${DART_BENCH_ONLY_WGPU:-0}" != 1 ] && [ "$only_search" != 1 ]; then
  echo "== dart-rl WASM build vs native"
  pnpm exec tsx ts/scripts/bench-wasm.ts --out "${DART_BENCH_WASM_OUT:-bench/results/wasm.json}" $( [ "${DART_BENCH_QUICK:-0}" = 1 ] && echo --reps 1 )
fi

# ---------------------------------------------------------------------------
# RL step benchmark (bench/results/rl-step.json): scripts/bench/rl_step.sh.
if [ "${DART_BENCH_NO_RL_STEP:-0}" != 1 ] && [ "${DART_BENCH_ONLY_GENERATE:-0}" != 1 ] && [ "${DART_BENCH_ONLY_WGPU:-0}" != 1 ] && [ "$only_search" != 1 ]; then
  bash scripts/bench/rl_step.sh
fi
