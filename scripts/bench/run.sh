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
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="${DART_BENCH_OUT:-bench/results/engine-cpu.json}"
threads="${DART_BENCH_THREADS:-$(nproc)}"
py="${DART_BENCH_PYTHON:-scripts/.venv-ref/bin/python}"
quick=()
[ "${DART_BENCH_QUICK:-0}" = 1 ] && quick=(--quick)

echo "== building dart-bench (release)"
cargo build --release --quiet -p dart-bench
bin="${CARGO_TARGET_DIR:-target}/release/dart-bench"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin" configs "${quick[@]}" > "$tmp/configs.json"

torch_args=()
if [ "${DART_BENCH_NO_TORCH:-0}" = 1 ]; then
  torch_args=(--torch-null "skipped (DART_BENCH_NO_TORCH=1)")
elif [ ! -x "$py" ]; then
  torch_args=(--torch-null "no python at $py (create scripts/.venv-ref from scripts/requirements-ref.txt, or set DART_BENCH_PYTHON)")
elif ! "$py" -c 'import torch, transformers, peft' > /dev/null 2> "$tmp/import.err"; then
  torch_args=(--torch-null "$py cannot import torch/transformers/peft: $(tail -n 1 "$tmp/import.err")")
else
  echo "== torch + peft reference ($py, $threads threads)"
  if "$py" scripts/bench/torch_ref.py --configs "$tmp/configs.json" --threads "$threads" --out "$tmp/torch.json"; then
    torch_args=(--torch-json "$tmp/torch.json")
  else
    torch_args=(--torch-null "scripts/bench/torch_ref.py exited with status $?")
  fi
fi

echo "== dart-core engine"
"$bin" run --out "$out" --threads "$threads" "${quick[@]}" "${torch_args[@]}"
