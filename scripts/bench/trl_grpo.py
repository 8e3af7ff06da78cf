#!/usr/bin/env python3
"""TRL `GRPOTrainer` reference of the RL step benchmark (ts/scripts/bench-rl-step.ts).

One GRPO step of TRL on the same model folder (world/model, loaded as is with
transformers), with one peft LoRA (rank/alpha/targets from the flags: the TS
script passes rank 16, alpha 32 on the seven projections, the size of dart's
two rank-8 adapters together), the same prompts (Search-R1's instruction,
written by the TS script in the order dart's steps drew them, as a user turn:
TRL applies the model's chat template with the generation prompt, as dart
does), prompts per step, group size (`num_generations`), temperature, KL
coefficient (`beta`, the reference being the base model with the adapter
disabled, as dart's frozen base), clip epsilon, lr, max grad norm and threads.

Single-turn: TRL generates one completion per sample with `model.generate`
and no search. TRL 1.16 has a tool loop (`tools=` / `environment_factory=`),
but it parses tool calls with the tokenizer's response schema (JSON tool
calls of known chat templates); this model writes Search-R1's
`<search> q </search>` under a plain ChatML template, so the loop would never
fire. (`rollout_func=` would allow a hand-written multi-turn loop; not done.)
The reward is exact match of the `<answer>` against the golden answers
(SQuAD normalisation, as dart's `em` reward).

Timing: 1 (`--warmup`) + `--steps` optimizer steps, one generation batch per
step (per_device_train_batch_size = prompts x generations, one accumulation
step, num_iterations 1, gradient checkpointing off: TRL's default is on); a TrainerCallback times on_step_begin -> on_step_end,
and `trainer._generate` (the sampling) is wrapped to time the rollout; the
rest of the step (reward, the reference and policy logprobs, loss, backward,
AdamW) is `update_s`. Generated tokens are the completions' tokens up to and
including EOS (TRL's `completion_ids`), counted in the reward function.

Writes the result JSON to --out (and prints it on stdout). Never a dependency
of the product. No network: HF_HUB_OFFLINE=1, report_to none.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import string
import sys
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# Before torch loads libgomp: with the default (active) wait policy, torch's
# OpenMP threads spin at every barrier, and on a machine whose cores are also
# busy with other work (2 shared cores here) a 64 x 64-token generate took 16-33 s
# at 2 threads against 1.7 s with PASSIVE (and 1.9 s at 1 thread): the
# reference would be timed at its worst. PASSIVE costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def loadavg() -> str | None:
    try:
        return open("/proc/loadavg").read().strip()
    except OSError:
        return None


# SQuAD normalisation (Search-R1's `em_check`; dart's ts/src/reward/rules.ts).
def normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def em(text: str, golden: list[str]) -> float:
    m = ANSWER.findall(text)
    if not m:
        return 0.0
    a = normalize(m[-1])
    return 1.0 if any(a == normalize(g) for g in golden) else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="jsonl of {prompt, golden_answers}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--num-generations", type=int, default=8)
    ap.add_argument("--max-completion-length", type=int, required=True)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.001)
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32)
    ap.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    load_before = loadavg()
    import torch
    import transformers
    import peft
    import trl
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()

    # The model folder as is: a failure here is a bug of the folder, reported with its error.
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"transformers cannot load {args.model}: {type(e).__name__}: {e}")

    rows = [json.loads(line) for line in open(args.prompts) if line.strip()]
    total_steps = args.warmup + args.steps
    need = total_steps * args.prompts_per_step
    if len(rows) < need:
        raise SystemExit(f"{args.prompts}: {len(rows)} prompts, need {need}")
    dataset = datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["prompt"]}], "golden_answers": r["golden_answers"]} for r in rows[:need]]
    )

    batch = args.prompts_per_step * args.num_generations
    per_step_tokens: list[dict] = []

    def prompt_len(messages) -> int:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def em_reward(prompts, completions, completion_ids, golden_answers, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        gen = sum(len(ids) for ids in completion_ids)
        plen = sum(prompt_len(p) for p in prompts)
        eos = tokenizer.eos_token_id
        per_step_tokens.append(
            {
                "generated": gen,
                "prompt": plen,
                "completions": len(completion_ids),
                "ended_eos": sum(1 for ids in completion_ids if len(ids) > 0 and ids[-1] == eos),
                "answered": sum(1 for t in texts if ANSWER.search(t)),
                "searches_written": sum(t.count("<search>") for t in texts),
            }
        )
        return [em(t, g) for t, g in zip(texts, golden_answers)]

    peft_config = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.0,
        target_modules=args.lora_targets.split(","),
        task_type="CAUSAL_LM",
    )
    out_dir = tempfile.mkdtemp(prefix="dart-bench-trl-out-")
    config = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=1.0,
        beta=args.beta,
        epsilon=args.epsilon,
        num_iterations=1,
        loss_type="dapo",  # token-level mean over the batch, dart's "token-mean"
        scale_rewards="group",  # dart's advantage.scaleByStd
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=args.max_grad_norm,
        weight_decay=0.0,
        max_steps=total_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        fp16=False,
        seed=args.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_completions=False,
        # TRL's GRPOConfig defaults to gradient checkpointing (memory for big models); off here, which only
        # makes TRL faster (no recomputed forward), as dart does not checkpoint either.
        gradient_checkpointing=False,
    )

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.begin = None
            self.steps: list[float] = []

        def on_step_begin(self, args_, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, args_, state, control, **kw):
            self.steps.append(time.perf_counter() - self.begin)

    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=em_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    generate_s: list[float] = []
    inner_generate = trainer._generate

    def timed_generate(*a, **kw):
        t0 = time.perf_counter()
        out = inner_generate(*a, **kw)
        generate_s.append(time.perf_counter() - t0)
        return out

    trainer._generate = timed_generate
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)

    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    load_after = loadavg()

    if len(timer.steps) != total_steps or len(generate_s) != total_steps or len(per_step_tokens) != total_steps:
        raise SystemExit(
            f"expected {total_steps} steps, generations and reward calls; got {len(timer.steps)}, {len(generate_s)}, {len(per_step_tokens)}"
        )
    w = args.warmup
    step_s = timer.steps[w:]
    roll_s = generate_s[w:]
    upd_s = [s - r for s, r in zip(step_s, roll_s)]
    toks = per_step_tokens[w:]
    gen = [t["generated"] for t in toks]
    seq = [t["generated"] + t["prompt"] for t in toks]
    n = sum(t["completions"] for t in toks)
    rewards = [h.get("reward") for h in trainer.state.log_history if "reward" in h]

    def r(x, d=6):
        return float(f"{x:.{d}g}")

    result = {
        "available": True,
        "what": "trl GRPOTrainer.train(): single-turn generation (transformers generate, no search), EM reward, group advantages, reference logprobs (adapter off), dapo loss, AdamW",
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "torch": torch.__version__,
            "datasets": datasets.__version__,
            "python": sys.version.split()[0],
        },
        "turns": "single",
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "lora": {"rank": args.lora_rank, "alpha": args.lora_alpha, "targets": args.lora_targets.split(","), "trainable_params": trainable},
        "per_device_train_batch_size": batch,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "beta": args.beta,
        "loss_type": "dapo",
        "gradient_checkpointing": False,
        "warmup_steps": w,
        "timed_steps": args.steps,
        "median_step_s": r(statistics.median(step_s)),
        "median_rollout_s": r(statistics.median(roll_s)),
        "median_update_s": r(statistics.median(upd_s)),
        "rollout_fraction": r(sum(roll_s) / sum(step_s)),
        "all_step_s": [r(x) for x in step_s],
        "all_rollout_s": [r(x) for x in roll_s],
        "all_update_s": [r(x) for x in upd_s],
        "warmup_step_s": [r(x) for x in timer.steps[:w]],
        "completions_per_step": batch,
        "generated_tokens_per_step": r(statistics.median(gen)),
        "generated_tokens_definition": "completion tokens up to and including EOS (TRL's completion_ids)",
        "sequence_tokens_per_step": r(statistics.median(seq)),
        "prompt_tokens_per_step": r(statistics.median([t["prompt"] for t in toks])),
        "completion_length_mean": r(sum(gen) / n),
        "ended_eos_fraction": r(sum(t["ended_eos"] for t in toks) / n),
        "answer_fraction": r(sum(t["answered"] for t in toks) / n),
        "searches_written_per_completion": r(sum(t["searches_written"] for t in toks) / n),
        "reward_mean": r(statistics.mean(rewards[w:])) if len(rewards) > w else None,
        "rollout_tokens_per_s": r(sum(gen) / sum(roll_s)),
        "rollout_tokens_per_s_definition": "generated tokens / generate seconds",
        "update_tokens_per_s": r(sum(seq) / sum(upd_s)),
        "update_tokens_per_s_definition": "sequence tokens (prompt + completion, no padding) / (step - generate) seconds",
        "step_generated_tokens_per_s": r(sum(gen) / sum(step_s)),
        "wall_s": r(wall),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
