#!/usr/bin/env python3
"""Torch + peft reference timing for the dart-rl CPU engine benchmark.

Reads the benchmark configurations written by `dart-bench configs` (so both
sides time the same shapes), builds each model with transformers (random
init, fp32, sdpa attention), attaches one rank-16 LoRA adapter on all seven
projections with peft and times forward + backward + AdamW step on the same
batch shape (loss = -mean token logprob, like dart-bench's dLdlogp = -1/n).

Torch cannot route LoRA adapters per token, so the reference for DART (two
rank-8 slots, routed in spans) is one rank-16 adapter over every token: the
same LoRA FLOPs.

Writes {"available": true, "configs": {name: {...}}, ...} to --out, or
{"available": false, "reason": ...} when something fails. Invoked by
scripts/bench/run.sh; torch is never a dependency of the product.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import ref_common as rc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    def fail(reason: str) -> int:
        return rc.fail(args.out, "torch reference", reason)

    try:
        import torch
        import transformers
        import peft
        from peft import LoraConfig, get_peft_model  # noqa: F401 (checked here, used in ref_common)
        from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return fail(f"import torch/transformers/peft failed: {e}")

    rc.set_cpu_threads(args.threads)
    spec = json.load(open(args.configs))
    lr = spec.get("lr", 1e-4)
    results = {}
    try:
        for c in spec["configs"]:
            name = c["name"]
            cfg = rc.hf_config(c)
            t = time.perf_counter()
            ra = c["reference_adapter"]
            model = rc.peft_model(cfg, ra)
            params, opt, ids, n = rc.train_setup(model, cfg, c, lr)
            B, L = c["seqs"], c["seq_len"]
            print(f"torch {name}: built in {time.perf_counter() - t:.1f}s "
                  f"({sum(p.numel() for p in params)} LoRA params, {B}x{L} tokens)", flush=True)

            def it():
                return rc.train_step(model, opt, ids, n)

            for _ in range(c["warmup"]):
                w = it()
                print(f"  torch warm-up {sum(w):.3f}s", flush=True)
            times = []
            for r in range(c["reps"]):
                x = it()
                times.append(x)
                print(f"  torch rep {r}: fwd {x[0]:.3f} bwd {x[1]:.3f} step {x[2]:.3f} = {sum(x):.3f}s", flush=True)
            results[name] = rc.train_summary(times, ra, n)
            print(f"  => torch {name}: {n / results[name]['median_s']['total']:.0f} tok/s", flush=True)
            del model, opt, params
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return fail(f"torch reference failed: {type(e).__name__}: {e}")

    with open(args.out, "w") as f:
        json.dump({
            **rc.versions(torch, transformers, peft),
            "threads": torch.get_num_threads(),
            "attn_implementation": "sdpa",
            "note": "one rank-16 peft LoRA on all 7 projections over every token (torch cannot route per token); "
                    "loss = -mean token logprob; torch.optim.AdamW on the LoRA parameters; fp32",
            "configs": results,
        }, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
