#!/usr/bin/env python3
"""numpy (OpenBLAS) GEMM reference for the dart-rl CPU engine benchmark.

Reads the `gemm` shapes that `dart-bench configs` writes (so both sides time
the same products) and times numpy.matmul in float32 on each: C[m,n] = A[m,k]
B, with B stored [n,k] and passed transposed where the shape says so (the
linear-forward layout y = x W^T), median of repetitions over at least 0.4 s
after one warm-up, like dart-bench. Threads: set by run.sh through
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before numpy is imported (checked here
with threadpoolctl when it is installed). For the AVX2 class on an AVX-512
CPU, run.sh sets OPENBLAS_CORETYPE=Haswell, so OpenBLAS runs its AVX2 kernels.

Writes {"available": true, "gemm": [{name, m, n, k, gflops}], ...} to --out,
or {"available": false, "reason": ...}. numpy is never a product dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import ref_common as rc

ENV = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OMP_WAIT_POLICY"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import numpy as np
    except Exception as e:  # noqa: BLE001
        return rc.fail(args.out, "numpy reference", f"import numpy failed: {e}")
    blas = None
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")} for p in threadpool_info()]
    except Exception:  # noqa: BLE001 (threadpoolctl is optional)
        pass
    shapes = json.load(open(args.configs))["gemm"]
    rng = np.random.default_rng(0)
    min_reps, min_time = (2, 0.05) if args.quick else (3, 0.4)
    out = []
    for s in shapes:
        m, n, k = s["m"], s["n"], s["k"]
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if s["b_transposed"] else (k, n)).astype(np.float32)
        bb = b.T if s["b_transposed"] else b
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(a, bb, out=c)
        times = []
        start = time.perf_counter()
        while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < 200):
            t = time.perf_counter()
            np.matmul(a, bb, out=c)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        gflops = 2.0 * m * n * k / med / 1e9
        print(f"  numpy {s['name']:<48} {m:>5}x{n:>5}x{k:>5}  {gflops:7.1f} GFLOPS (median of {len(times)})")
        out.append({"name": s["name"], "m": m, "n": n, "k": k, "gflops": gflops, "median_s": med, "reps": len(times)})
    with open(args.out, "w") as f:
        json.dump({
            "available": True, "numpy_version": np.__version__, "blas": blas, "threads": args.threads,
            "env": {k: os.environ.get(k) for k in ENV}, "gemm": out, "loadavg": rc.loadavg(),
        }, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
