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
import statistics
import sys
import time
import traceback


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    def fail(reason: str) -> int:
        with open(args.out, "w") as f:
            json.dump({"available": False, "reason": reason}, f)
        print(f"torch reference unavailable: {reason}", file=sys.stderr)
        return 0

    try:
        import torch
        import transformers
        import peft
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM
    except Exception as e:  # noqa: BLE001
        return fail(f"import torch/transformers/peft failed: {e}")

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    spec = json.load(open(args.configs))
    lr = spec.get("lr", 1e-4)
    results = {}
    try:
        for c in spec["configs"]:
            name = c["name"]
            hf = dict(c["hf_config"])
            model_type = hf.pop("model_type")
            hf.pop("architectures", None)
            cfg = AutoConfig.for_model(model_type, **hf)
            t = time.perf_counter()
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
            ra = c["reference_adapter"]
            lcfg = LoraConfig(
                r=ra["rank"], lora_alpha=ra["alpha"], target_modules=list(ra["targets"]),
                lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lcfg)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=lr)
            B, L = c["seqs"], c["seq_len"]
            n = B * L
            g = torch.Generator().manual_seed(1)
            ids = torch.randint(0, cfg.vocab_size, (B, L), generator=g)
            print(f"torch {name}: built in {time.perf_counter() - t:.1f}s "
                  f"({sum(p.numel() for p in params)} LoRA params, {B}x{L} tokens)", flush=True)

            def it():
                t0 = time.perf_counter()
                logits = model(input_ids=ids, use_cache=False).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
                loss = -logp.sum() / n
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                opt.step()
                opt.zero_grad(set_to_none=True)
                t3 = time.perf_counter()
                return [t1 - t0, t2 - t1, t3 - t2]

            for _ in range(c["warmup"]):
                w = it()
                print(f"  torch warm-up {sum(w):.3f}s", flush=True)
            times = []
            for r in range(c["reps"]):
                x = it()
                times.append(x)
                print(f"  torch rep {r}: fwd {x[0]:.3f} bwd {x[1]:.3f} step {x[2]:.3f} = {sum(x):.3f}s", flush=True)
            med = lambda i: statistics.median(t[i] for t in times)  # noqa: E731
            total = statistics.median(sum(t) for t in times)
            fb = statistics.median(t[0] + t[1] for t in times)
            results[name] = {
                "adapter": {"rank": ra["rank"], "alpha": ra["alpha"], "targets": ra["targets"]},
                "median_s": {"forward": med(0), "backward": med(1), "step": med(2), "forward_backward": fb, "total": total},
                "all_total_s": [sum(t) for t in times],
                "tokens_per_s": round(n / total, 1),
                "fwd_bwd_tokens_per_s": round(n / fb, 1),
            }
            print(f"  => torch {name}: {n / total:.0f} tok/s", flush=True)
            del model, opt, params
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return fail(f"torch reference failed: {type(e).__name__}: {e}")

    with open(args.out, "w") as f:
        json.dump({
            "available": True,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "peft_version": peft.__version__,
            "threads": torch.get_num_threads(),
            "attn_implementation": "sdpa",
            "note": "one rank-16 peft LoRA on all 7 projections over every token (torch cannot route per token); "
                    "loss = -mean token logprob; torch.optim.AdamW on the LoRA parameters; fp32",
            "configs": results,
        }, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
