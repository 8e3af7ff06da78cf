#!/usr/bin/env python3
"""Torch CUDA reference for the dart-rl wgpu benchmark (bench/results/engine-wgpu.json).

Reads the configurations written by `engine_wgpu configs` (GEMM shapes incl.
4096^3 and the model configs of engine-cpu.json, so both sides time the same
shapes on the same card) and times on cuda:

  - fp32 matmul GFLOPS with TF32 off (torch.backends.cuda.matmul.allow_tf32 =
    False, float32 matmul precision "highest"): C = A @ B, or A @ W^T where
    the shape has b_transposed (the linear-forward layout);
  - transformers + peft forward + backward + AdamW step: random init, fp32,
    sdpa attention, one rank-16 LoRA adapter on all seven projections (torch
    cannot route adapters per token; same LoRA FLOPs as DART's two rank-8
    slots), loss = -mean token logprob, same batch shape.

Writes {"available": true, "gemm": [...], "configs": {name: {...}}, ...} to
--out, or {"available": false, "reason": ...} when CUDA or an import is
missing or something fails. Run by scripts/bench/run.sh only when
`torch.cuda.is_available()`; torch is never a dependency of the product.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback

import ref_common as rc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    def fail(reason: str) -> int:
        return rc.fail(args.out, "torch GPU reference", reason)

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return fail(f"import torch failed: {e}")
    if not torch.cuda.is_available():
        return fail("torch.cuda.is_available() is False")

    # fp32 as our kernels compute it: no TF32 anywhere.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    spec = json.load(open(args.configs))
    quick = bool(spec.get("quick", False))
    lr = spec.get("lr", 1e-4)

    def sync_time(fn, iters: int) -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / iters

    gemm = []
    try:
        for g in spec["gemm"]:
            m, n, k, tb = g["m"], g["n"], g["k"], g["b_transposed"]
            a = torch.rand(m, k, device=dev, dtype=torch.float32) * 2 - 1
            b = torch.rand(n, k, device=dev, dtype=torch.float32) * 2 - 1 if tb else torch.rand(k, n, device=dev, dtype=torch.float32) * 2 - 1
            c = torch.empty(m, n, device=dev, dtype=torch.float32)
            fn = (lambda: torch.matmul(a, b.t(), out=c)) if tb else (lambda: torch.matmul(a, b, out=c))
            fn()
            est = sync_time(fn, 1)
            target = 0.05 if quick else 0.2
            iters = max(1, min(1000, int(target / max(est, 1e-6))))
            times = [sync_time(fn, iters) for _ in range(1 if quick else 5)]
            med = statistics.median(times)
            flops = 2.0 * m * n * k
            row = {"name": g["name"], "m": m, "n": n, "k": k, "b_transposed": tb,
                   "gflops": round(flops / med / 1e9, 2), "best_gflops": round(flops / min(times) / 1e9, 2),
                   "median_s": med, "calls_per_batch": iters, "batches": len(times)}
            gemm.append(row)
            print(f"torch gemm {g['name']:<48} {m:>5}x{n:>5}x{k:>5}  {row['gflops']:>9.1f} GFLOPS (fp32, TF32 off)", flush=True)
            del a, b, c
        torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return fail(f"torch GEMM failed: {type(e).__name__}: {e}")

    try:
        import transformers
        import peft
        from peft import LoraConfig, get_peft_model  # noqa: F401 (checked here, used in ref_common)
        from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return fail(f"import transformers/peft failed: {e}")

    results = {}
    try:
        for c in spec["configs"]:
            name = c["name"]
            cfg = rc.hf_config(c)
            t = time.perf_counter()
            ra = c["reference_adapter"]
            model = rc.peft_model(cfg, ra, device=dev)
            params, opt, ids, n = rc.train_setup(model, cfg, c, lr, device=dev)
            B, L = c["seqs"], c["seq_len"]
            print(f"torch {name}: built in {time.perf_counter() - t:.1f}s ({B}x{L} tokens, cuda)", flush=True)

            def it():
                return rc.train_step(model, opt, ids, n, sync=torch.cuda.synchronize)

            for _ in range(max(1, c["warmup"])):
                it()
            times = [it() for _ in range(c["reps"])]
            results[name] = rc.train_summary(times, ra, n)
            print(f"  => torch+peft {name}: {n / results[name]['median_s']['total']:.0f} tok/s on cuda", flush=True)
            del model, opt, params
            torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return fail(f"torch+peft forward/backward failed: {type(e).__name__}: {e}")

    with open(args.out, "w") as f:
        json.dump({
            **rc.versions(torch, transformers, peft),
            "cuda_device": torch.cuda.get_device_name(0),
            "cuda_version": torch.version.cuda,
            "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "attn_implementation": "sdpa",
            "note": "fp32 matmul with TF32 off (torch.matmul, out= preallocated, timed with cuda synchronize); "
                    "transformers+peft: one rank-16 LoRA on all 7 projections over every token (torch cannot route per token), "
                    "loss = -mean token logprob, torch.optim.AdamW on the LoRA parameters, fp32, sdpa",
            "gemm": gemm,
            "configs": results,
        }, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
