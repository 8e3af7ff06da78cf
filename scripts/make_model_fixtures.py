#!/usr/bin/env python3
"""Build the model-family fixtures under crates/dart-core/tests/fixtures/models/.

One folder per architecture variant that the engine implements beyond the
peft-tiny fixture (Qwen2 / tied Llama):
  llama-mlp-bias/   Llama with `mlp_bias` and `attention_bias` (biases on all 7 projections)
  llama3-rope/      Llama with Llama 3.1-style RoPE scaling (`rope_type: "llama3"`)
  qwen3/            Qwen3 dense: per-head RMSNorm of q and k, explicit head_dim != hidden/heads
  yarn-rope/        Qwen3 with YaRN RoPE scaling (cos/sin scaled by the attention factor)
each with model/ (f32 safetensors + config.json), adapters/{reason,tool}/ (PEFT),
case.json (tokens, seqLens, routes, dLdlogp, routed logprobs, base logprobs) and
grads-{reason,tool}.safetensors, in the layout of peft-tiny (see its README).
Plus rope-scaling.json: transformers' own inverse frequencies and attention
factor (ROPE_INIT_FUNCTIONS, computed in f32 by transformers) for several
rope_parameters, which the engine's RopeScaling must reproduce.

References are computed in float64. transformers computes RoPE's inverse
frequencies in float32 even in a float64 model; here they are recomputed in
float64 by a port of transformers' formulas (`inv_freq_f64`), which is first
checked against transformers' own f32 values (relative 1e-6), so that the
fixture tests the formulas, not f32 rounding.

Run it through scripts/make-peft-fixture.sh --models (same venv). CI never runs this.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_peft_fixture as base  # noqa: E402  (helpers: Router, effective_routes, write_json, ...)

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.qwen3 import modeling_qwen3  # noqa: E402

OUT = base.REPO / "crates" / "dart-core" / "tests" / "fixtures" / "models"
ADAPTERS = base.ADAPTERS
ALL7 = base.ALL7

COMMON = dict(
    vocab_size=72,
    hidden_size=24,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-6,
    max_position_embeddings=64,
    tie_word_embeddings=False,
    hidden_act="silu",
)

CASES = {
    "llama-mlp-bias": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(COMMON, attention_bias=True, mlp_bias=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    ),
    # head_dim 6 -> 3 frequencies with wavelengths 6.3, 135 and 2920: with
    # original 256 they fall into all three llama3 regimes (kept: < 64,
    # ramped: 64..256, divided: > 256).
    "llama3-rope": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            COMMON,
            attention_bias=False,
            mlp_bias=False,
            max_position_embeddings=2048,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256,
            },
        ),
    ),
    "qwen3": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(COMMON, head_dim=8, attention_bias=False, use_sliding_window=False,
             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    ),
    "yarn-rope": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(COMMON, head_dim=8, attention_bias=True, use_sliding_window=False,
             rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                              "original_max_position_embeddings": 16}),
    ),
}

# rope_parameters checked against ROPE_INIT_FUNCTIONS (head_dim, max_position_embeddings, params).
ROPE_CHECKS = [
    (16, 128, {"rope_type": "default", "rope_theta": 10000.0}),
    (16, 128, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5}),
    (32, 4096, {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
    (64, 131072, {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    (16, 4096, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 1024}),
    (128, 131072, {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
                   "original_max_position_embeddings": 32768}),
    (32, 4096, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 512,
                "beta_fast": 16.0, "beta_slow": 2.0, "mscale": 0.707, "mscale_all_dim": 1.0, "truncate": False}),
    (32, 4096, {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 512,
                "attention_factor": 1.25}),
]


def inv_freq_f64(head_dim: int, max_pos: int, rp: dict) -> tuple[torch.Tensor, float]:
    """transformers' inverse frequencies (modeling_rope_utils) in float64."""
    theta = float(rp["rope_theta"])
    dim = head_dim
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    kind = rp.get("rope_type", "default")
    if kind == "default":
        return inv, 1.0
    if kind == "linear":
        return inv / rp["factor"], 1.0
    if kind == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp.get("original_max_position_embeddings", max_pos)
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        out = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, out), 1.0
    if kind == "yarn":
        orig = rp.get("original_max_position_embeddings", max_pos)
        factor = rp.get("factor") or max_pos / orig

        def get_mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        att = rp.get("attention_factor")
        if att is None:
            if rp.get("mscale") and rp.get("mscale_all_dim"):
                att = get_mscale(factor, rp["mscale"]) / get_mscale(factor, rp["mscale_all_dim"])
            else:
                att = get_mscale(factor)
        bf, bs = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

        def corr(rot):
            return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(theta))

        low, high = corr(bf), corr(bs)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low), 0, 1)
        extra = 1 - ramp
        return (inv / factor) * (1 - extra) + inv * extra, float(att)
    raise ValueError(kind)


def hf_inv_freq(head_dim: int, max_pos: int, rp: dict) -> tuple[torch.Tensor, float]:
    cfg = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                      max_position_embeddings=max_pos, rope_parameters=dict(rp))
    fn = ROPE_INIT_FUNCTIONS[rp["rope_type"]] if rp["rope_type"] != "default" else None
    if fn is None:
        inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        return inv, 1.0
    inv, att = fn(cfg, "cpu")
    return inv, float(att)


def make_rope_forward(orig_forward):
    """RoPE forward computing cos/sin in float64 from `inv_freq_f64`."""

    def forward(self, x, position_ids):
        cfg = self.config
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        inv, att = inv_freq_f64(hd, cfg.max_position_embeddings, cfg.rope_parameters)
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * att).to(x.dtype), (emb.sin() * att).to(x.dtype)

    return forward


ORIG = {
    "llama_rope": modeling_llama.LlamaRotaryEmbedding.forward,
    "qwen3_rope": modeling_qwen3.Qwen3RotaryEmbedding.forward,
    "qwen3_rms": modeling_qwen3.Qwen3RMSNorm.forward,
    "qwen3_eager": modeling_qwen3.eager_attention_forward,
}


def set_exact_f64(on: bool) -> None:
    base.set_exact_f64(on)
    if on:
        modeling_llama.LlamaRotaryEmbedding.forward = make_rope_forward(ORIG["llama_rope"])
        modeling_qwen3.Qwen3RotaryEmbedding.forward = make_rope_forward(ORIG["qwen3_rope"])
        modeling_qwen3.Qwen3RMSNorm.forward = base.rms_forward_exact
        modeling_qwen3.eager_attention_forward = base.make_eager_exact(modeling_qwen3.repeat_kv)
    else:
        modeling_llama.LlamaRotaryEmbedding.forward = ORIG["llama_rope"]
        modeling_qwen3.Qwen3RotaryEmbedding.forward = ORIG["qwen3_rope"]
        modeling_qwen3.Qwen3RMSNorm.forward = ORIG["qwen3_rms"]
        modeling_qwen3.eager_attention_forward = ORIG["qwen3_eager"]


def rope_checks() -> None:
    rows = []
    for hd, max_pos, rp in ROPE_CHECKS:
        inv_hf, att_hf = hf_inv_freq(hd, max_pos, rp)
        inv64, att64 = inv_freq_f64(hd, max_pos, rp)
        rel = float(((inv64 - inv_hf.double()).abs() / inv64.abs()).max())
        assert rel < 1e-6 and abs(att64 - att_hf) < 1e-6, (rp, rel, att64, att_hf)
        print(f"rope {rp['rope_type']:8s} head_dim {hd:3d}: f64 port vs transformers f32 rel {rel:.1e}, attention factor {att_hf:.6f}")
        rows.append({"headDim": hd, "maxPositionEmbeddings": max_pos, "ropeParameters": rp,
                     "invFreq": [float(x) for x in inv64], "invFreqTransformers": [float(x) for x in inv_hf],
                     "attentionFactor": att64})
    (OUT / "rope-scaling.json").write_text(json.dumps(rows, indent=1) + "\n")


def make_case(name: str, cfg_cls, model_cls, kw: dict, seed: int) -> None:
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    (out / "model").mkdir(parents=True)
    set_exact_f64(False)
    torch.manual_seed(seed)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).to(torch.float32).eval()
    base.reinit_base(model)
    model.save_pretrained(out / "model")
    c = json.loads((out / "model" / "config.json").read_text())
    c.pop("_name_or_path", None)
    (out / "model" / "config.json").write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    gc = out / "model" / "generation_config.json"
    if gc.exists():
        gc.unlink()
    sd32 = {k: v.clone() for k, v in model.state_dict().items()}

    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=ALL7, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"),
        adapter_name="reason",
    )
    peft_model.add_adapter("tool", LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "k_proj", "up_proj", "down_proj"],
                                              lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for pname, p in peft_model.named_parameters():
            if ".lora_A." in pname or ".lora_B." in pname:
                p.normal_(0.0, 0.2)
    peft_model.save_pretrained(out / "adapters", selected_adapters=ADAPTERS)
    for n in ADAPTERS:
        d = out / "adapters" / n
        acfg = json.loads((d / "adapter_config.json").read_text())
        acfg["base_model_name_or_path"] = "../../model"
        acfg["target_modules"] = sorted(acfg["target_modules"])
        (d / "adapter_config.json").write_text(json.dumps(acfg, indent=2, sort_keys=True) + "\n")
    for extra in (out / "adapters").iterdir():
        if extra.name not in ADAPTERS:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    keys = {n: sorted(load_file(out / "adapters" / n / "adapter_model.safetensors")) for n in ADAPTERS}

    peft_model = peft_model.to(torch.float64).eval()
    set_exact_f64(True)
    params = {n: {} for n in ADAPTERS}
    for pname, p in peft_model.named_parameters():
        p.requires_grad_(".lora_" in pname)
        for n in ADAPTERS:
            if f".lora_A.{n}." in pname or f".lora_B.{n}." in pname:
                params[n][pname.replace(f".{n}.", ".")] = p
    for n in ADAPTERS:
        assert sorted(params[n]) == keys[n], n
    router = base.Router()
    router.install(peft_model)

    g = torch.Generator().manual_seed(1000 + seed)
    n_tok = sum(base.SEQ_LENS)
    tokens = torch.randint(0, kw["vocab_size"], (n_tok,), generator=g).tolist()
    while True:
        routes = (torch.randint(0, 3, (n_tok,), generator=g) - 1).tolist()
        eff, o, ok = base.effective_routes(routes), 0, True
        for n in base.SEQ_LENS:
            ok &= set(eff[o:o + n]) == {-1, 0, 1}
            o += n
        if ok:
            break
    dl = torch.randn(n_tok, generator=g, dtype=torch.float64)
    o = 0
    for n in base.SEQ_LENS:
        dl[o] = 0.0
        o += n
    lp = base.routed_logprobs(peft_model, router, tokens, routes)
    flat = [(n, k, p) for n in ADAPTERS for k, p in params[n].items()]
    grads = torch.autograd.grad((dl * lp).sum(), [p for _, _, p in flat])
    with torch.no_grad():
        lp_base = base.routed_logprobs(peft_model, router, tokens, [-1] * n_tok)
        fresh = model_cls.from_pretrained(out / "model", dtype=torch.float64, attn_implementation="eager").eval()
        for k, v in fresh.state_dict().items():
            assert torch.equal(v, sd32[k].to(torch.float64)), k
        plain = base.plain_logprobs(fresh, tokens)
        assert base.maxdiff(plain, lp_base) < 1e-12, base.maxdiff(plain, lp_base)
        set_exact_f64(False)
        shipped = base.plain_logprobs(fresh, tokens)
        set_exact_f64(True)
    print(f"{name}: HF f64 as shipped vs exact-f64: {base.maxdiff(shipped, lp_base):.2e}; "
          f"adapters vs base {base.maxdiff(lp, lp_base):.3f}; tensors {sorted(sd32)[:3]}...")

    # The variant matters: the same weights under the plain-Llama reading differ.
    base.write_json(out / "case.json", {
        "tokens": tokens, "seqLens": base.SEQ_LENS, "routes": routes, "dLdlogp": [float(x) for x in dl],
        "logprobs": [float(x) for x in lp.detach()], "logprobsBase": [float(x) for x in lp_base],
    })
    grad = {n: {} for n in ADAPTERS}
    for (n, k, _), gr in zip(flat, grads):
        grad[n][k] = gr.detach().to(torch.float32).contiguous()
    for n in ADAPTERS:
        save_file(grad[n], out / f"grads-{n}.safetensors", metadata={"format": "pt"})
    set_exact_f64(False)


def main() -> None:
    torch.set_grad_enabled(True)
    OUT.mkdir(parents=True, exist_ok=True)
    rope_checks()
    for i, (name, (cc, mc, kw)) in enumerate(CASES.items()):
        make_case(name, cc, mc, kw, seed=10 + i)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT.relative_to(base.REPO)} ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
