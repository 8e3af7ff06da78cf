"""What the torch reference scripts (torch_ref.py, torch_generate.py,
torch_gpu_ref.py) share: the failure record, the load average, CPU thread
setup, the model (from an HF config in a `configs` entry) with one peft LoRA,
and one timed forward + backward + AdamW step with its summary.

torch, transformers and peft are imported inside the functions, so a script
can report a failed import through `fail` itself.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def fail(out: str, what: str, reason: str) -> int:
    """Writes {"available": false, "reason": ...} to `out` and says so on stderr."""
    with open(out, "w") as f:
        json.dump({"available": False, "reason": reason}, f)
    print(f"{what} unavailable: {reason}", file=sys.stderr)
    return 0


def loadavg() -> str | None:
    try:
        return open("/proc/loadavg").read().strip()
    except OSError:
        return None


def set_cpu_threads(threads: int) -> None:
    """torch on `threads` intra-op threads, one inter-op thread, seed 0."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)


def hf_config(c: dict):
    """The transformers config of a `configs` entry's hf_config."""
    from transformers import AutoConfig

    hf = dict(c["hf_config"])
    model_type = hf.pop("model_type")
    hf.pop("architectures", None)
    return AutoConfig.for_model(model_type, **hf)


def peft_model(cfg, ra: dict, device=None):
    """Random-init fp32 model (sdpa attention) of `cfg`, moved to `device` when
    given, with one LoRA adapter of `ra` = {"rank", "alpha", "targets"}."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    if device is not None:
        model = model.to(device)
    lcfg = LoraConfig(
        r=ra["rank"], lora_alpha=ra["alpha"], target_modules=list(ra["targets"]),
        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def train_setup(model, cfg, c: dict, lr: float, device=None):
    """model.train(), AdamW on the LoRA parameters and a random [seqs, seq_len]
    batch (generator seed 1). Returns (params, opt, ids, n tokens)."""
    import torch

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    B, L = c["seqs"], c["seq_len"]
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (B, L), generator=gen)
    if device is not None:
        ids = ids.to(device)
    return params, opt, ids, B * L


def train_step(model, opt, ids, n: int, sync=None) -> list[float]:
    """One forward (loss = -mean token logprob) + backward + AdamW step; returns
    the seconds of each phase. `sync` (e.g. torch.cuda.synchronize) runs before
    every clock reading."""
    import torch

    if sync is not None:
        sync()
    t0 = time.perf_counter()
    logits = model(input_ids=ids, use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    loss = -logp.sum() / n
    if sync is not None:
        sync()
    t1 = time.perf_counter()
    loss.backward()
    if sync is not None:
        sync()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if sync is not None:
        sync()
    t3 = time.perf_counter()
    return [t1 - t0, t2 - t1, t3 - t2]


def train_summary(times: list[list[float]], ra: dict, n: int) -> dict:
    """The per-config record of the forward + backward + step timings."""
    med = lambda i: statistics.median(x[i] for x in times)  # noqa: E731
    total = statistics.median(sum(x) for x in times)
    fb = statistics.median(x[0] + x[1] for x in times)
    return {
        "adapter": {"rank": ra["rank"], "alpha": ra["alpha"], "targets": ra["targets"]},
        "median_s": {"forward": med(0), "backward": med(1), "step": med(2), "forward_backward": fb, "total": total},
        "all_total_s": [sum(x) for x in times],
        "tokens_per_s": round(n / total, 1),
        "fwd_bwd_tokens_per_s": round(n / fb, 1),
    }


def versions(torch, transformers, peft) -> dict:
    """The head of a successful result: available + library versions."""
    return {
        "available": True,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
    }
