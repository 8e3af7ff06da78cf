#!/usr/bin/env bash
# RL step benchmark: one full GRPO step of dart-rl on the built-in world
# against TRL's GRPOTrainer, timed in the same run (ts/scripts/bench-rl-step.ts,
# scripts/bench/trl_grpo.py); writes bench/results/rl-step.json. Run by
# `pnpm bench` (scripts/bench/run.sh, whose header lists the switches) or alone:
#   bash scripts/bench/rl_step.sh   (or DART_BENCH_ONLY_RL_STEP=1 pnpm bench)
# Environment: DART_BENCH_RL_STEP_OUT, DART_BENCH_THREADS, DART_BENCH_PYTHON,
# DART_BENCH_NO_TRL=1 / DART_BENCH_NO_TORCH=1 (skip TRL), DART_BENCH_QUICK=1
# (no warm-up, one timed step). Needs node_modules and the native addon
# (bash scripts/setup.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/bin:$PATH"
out="${DART_BENCH_RL_STEP_OUT:-bench/results/rl-step.json}"
threads="${DART_BENCH_THREADS:-$(nproc)}"
py="${DART_BENCH_PYTHON:-scripts/.venv-ref/bin/python}"
args=(--out "$out" --threads "$threads" --python "$py")
if [ "${DART_BENCH_QUICK:-0}" = 1 ]; then args+=(--warmup 0 --steps 1); fi
if [ "${DART_BENCH_NO_TRL:-0}" = 1 ]; then
  args+=(--trl-null "skipped (DART_BENCH_NO_TRL=1)")
elif [ "${DART_BENCH_NO_TORCH:-0}" = 1 ]; then
  args+=(--trl-null "skipped (DART_BENCH_NO_TORCH=1)")
fi
echo "== RL step: dart-rl GRPO step vs TRL GRPOTrainer ($threads threads)"
pnpm exec tsx ts/scripts/bench-rl-step.ts "${args[@]}"
