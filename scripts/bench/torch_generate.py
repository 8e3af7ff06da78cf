#!/usr/bin/env python3
"""transformers `generate` reference for the dart-rl generation benchmark.

Reads the configurations written by `generate configs` (crates/dart-bench/src/bin/generate.rs)
so both sides time the same shapes. Per config: the model from its HF config
(random init, fp32, sdpa attention) with one rank-16 peft LoRA attached on all
seven projections (unmerged, so its matmuls run every step; B is re-drawn
with std 0.02 so it is not zero), then

  - decode: batch b in (1, 16, 64) random prompts of prompt_len tokens,
    `model.generate(max_new_tokens=N+1, min_new_tokens=N+1, do_sample=False,
    use_cache=True)`; a StoppingCriteria records the time of every step, and
    the decode time is from the end of the first step (prompt encoded, first
    token chosen) to the end: b*N tokens, the same split dart-bench uses
    (generate(1) then generate(N));
  - long-context decode: batch 16 after 1000-token prompts (`long` in the configs);
  - prefill: batch 16 x 128-token prompts, time of `generate(max_new_tokens=1)`.

Writes {"available": true, "configs": {name: {...}}, ...} to --out, or
{"available": false, "reason": ...}. Invoked by scripts/bench/run.sh; torch is
never a dependency of the product.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback

import ref_common as rc
from ref_common import loadavg


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()

    def fail(reason: str) -> int:
        return rc.fail(args.out, "transformers reference", reason)

    try:
        import torch
        import transformers
        import peft
        from peft import LoraConfig, get_peft_model  # noqa: F401 (checked here, used in ref_common)
        from transformers import AutoConfig, AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return fail(f"import torch/transformers/peft failed: {e}")

    load_before = loadavg()
    rc.set_cpu_threads(args.threads)
    transformers.logging.set_verbosity_error()
    spec = json.load(open(args.configs))

    class StepTimes(StoppingCriteria):
        def __init__(self):
            self.times: list[float] = []

        def __call__(self, input_ids, scores, **kwargs):
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    results = {}
    try:
        for c in spec["configs"]:
            name = c["name"]
            if args.only and args.only != name:
                continue
            cfg = rc.hf_config(c)
            t = time.perf_counter()
            model = rc.peft_model(cfg, c["reference_adapter"])
            with torch.no_grad():
                for n_, p in model.named_parameters():
                    if "lora_B" in n_:
                        p.normal_(0.0, 0.02)
            model.eval()
            gcfg = model.generation_config if model.generation_config is not None else transformers.GenerationConfig()
            gcfg.pad_token_id = 0
            gcfg.eos_token_id = None
            gcfg.bos_token_id = None
            print(f"transformers {name}: built in {time.perf_counter() - t:.1f}s", flush=True)
            V = cfg.vocab_size
            g = torch.Generator().manual_seed(1)

            def run(b: int, plen: int, new: int):
                ids = torch.randint(0, V - 4, (b, plen), generator=g)
                st = StepTimes()
                t0 = time.perf_counter()
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                        do_sample=False, use_cache=True, generation_config=gcfg,
                        stopping_criteria=StoppingCriteriaList([st]),
                    )
                t1 = time.perf_counter()
                assert out.shape[1] == plen + new, (out.shape, plen, new)
                return t0, st.times, t1

            run(2, c["prompt_len"], 3)  # warm-up
            N = c["max_new_tokens"]

            def decode_at(b: int, plen: int):
                times, encode = [], []
                total = 0.0
                while not times or (total < c["min_time"] and len(times) < c["max_reps"]):
                    t0, steps, t1 = run(b, plen, N + 1)
                    assert len(steps) == N + 1, len(steps)
                    d = steps[-1] - steps[0]
                    times.append(d)
                    encode.append(steps[0] - t0)
                    total += d
                med = statistics.median(times)
                print(f"  transformers decode batch {b:>2} after {plen}: {b * N} tokens in {med:.3f}s = {b * N / med:.1f} tok/s "
                      f"({1e3 * med / N:.2f} ms/step; reps {len(times)})", flush=True)
                return {
                    "batch": b, "prompt_len": plen, "new_tokens": b * N, "median_s": med, "all_s": times,
                    "ms_per_step": round(1e3 * med / N, 3), "tokens_per_s": round(b * N / med, 1),
                    "prompt_encode_median_s": statistics.median(encode),
                }

            decode = {str(b): decode_at(b, c["prompt_len"]) for b in c["batches"]}
            long_decode = decode_at(c["long"]["batch"], c["long"]["prompt_len"]) if "long" in c else None
            pf = c["prefill"]
            times = []
            total = 0.0
            while not times or (total < c["min_time"] and len(times) < c["max_reps"]):
                t0, _, t1 = run(pf["batch"], pf["prompt_len"], 1)
                times.append(t1 - t0)
                total += t1 - t0
            med = statistics.median(times)
            n = pf["batch"] * pf["prompt_len"]
            print(f"  transformers prefill {pf['batch']} x {pf['prompt_len']}: {med:.3f}s = {n / med:.0f} tok/s", flush=True)
            results[name] = {
                "decode": decode,
                "long_decode": long_decode,
                "prefill": {"batch": pf["batch"], "prompt_len": pf["prompt_len"], "median_s": med, "all_s": times,
                            "tokens_per_s": round(n / med, 1)},
            }
            del model
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return fail(f"transformers reference failed: {type(e).__name__}: {e}")

    with open(args.out, "w") as f:
        json.dump({
            **rc.versions(torch, transformers, peft),
            "threads": torch.get_num_threads(),
            "attn_implementation": "sdpa",
            "lora": {"rank": 16, "alpha": 32, "targets": "all 7 projections", "merged": False, "b_init_std": 0.02},
            "note": "transformers model.generate, fp32, random init, greedy (do_sample=False), use_cache=True, "
                    "min_new_tokens=max_new_tokens (runs to the budget), inference_mode, one unmerged rank-16 peft LoRA "
                    "on all 7 projections (torch cannot route per token); decode time = end of step 1 to end of "
                    "step N+1 (StoppingCriteria timestamps)",
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "configs": results,
        }, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
