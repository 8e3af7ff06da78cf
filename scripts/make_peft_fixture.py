#!/usr/bin/env python3
"""Build the `peft-tiny` reference fixture for dart-core's engine tests.

Produces, under crates/dart-core/tests/fixtures/peft-tiny/ (see its README.md):
  model/                 random Qwen2ForCausalLM, f32, single model.safetensors
  model-bf16-sharded/    same weights in bf16, sharded (index + >= 2 shards)
  model-f16/             same weights in f16, single file
  llama-tied/            random LlamaForCausalLM with tied embeddings + expected.json
  adapters/reason/       PEFT LoRA adapter (r=4, alpha=8, all 7 projections)
  adapters/tool/         PEFT LoRA adapter (r=2, alpha=6, q,v,up,down)
  case.json              tokens/seqLens/routes/dLdlogp + expected logprobs
  grads-reason.safetensors, grads-tool.safetensors   dL/d(lora_A, lora_B), f32

Reference numbers are computed in float64 from exactly the saved f32 values.
Per-token routing (the "writer convention" of docs/engine-api.md) is implemented
on top of peft's own LoRA modules by replacing each peft lora.Linear forward with
    base_layer(x) + sum_k mask_k[..., None] * lora_B_k(lora_A_k(x)) * scaling_k

Run it through scripts/make-peft-fixture.sh (creates scripts/.venv-ref from
scripts/requirements-ref.txt). CI never runs this; only the committed output
is used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

try:
    import numpy as np
    import torch
    import transformers
    import peft
    import safetensors
    from safetensors.torch import load_file, save_file
    from torch import nn
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear as LoraLinear
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}: run scripts/make-peft-fixture.sh (it creates scripts/.venv-ref)")

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "dart-core" / "tests" / "fixtures" / "peft-tiny"

ADAPTERS = ["reason", "tool"]  # slot 0, slot 1
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SEQ_LENS = [7, 12, 5]

QWEN_CFG = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    rms_norm_eps=1e-6,
    max_position_embeddings=128,
    tie_word_embeddings=False,
    hidden_act="silu",
    use_sliding_window=False,
)
LLAMA_CFG = dict(
    vocab_size=80,
    hidden_size=24,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=4,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    rms_norm_eps=1e-5,
    max_position_embeddings=128,
    tie_word_embeddings=True,
    attention_bias=False,
    mlp_bias=False,
    hidden_act="silu",
)


# --------------------------------------------------------------------------
# float64-exact versions of the three places where HF's eager path drops to
# float32 even when the model is float64 (RMSNorm upcast, softmax dtype=f32,
# RoPE cos/sin computed in f32). For float32 inputs they compute the same thing
# as the originals; in float64 they keep full precision, which the finite
# difference check needs. The size of the change is printed (check 0).
# --------------------------------------------------------------------------
ORIG = {
    "qwen_rms": modeling_qwen2.Qwen2RMSNorm.forward,
    "llama_rms": modeling_llama.LlamaRMSNorm.forward,
    "qwen_rope": modeling_qwen2.Qwen2RotaryEmbedding.forward,
    "llama_rope": modeling_llama.LlamaRotaryEmbedding.forward,
    "qwen_eager": modeling_qwen2.eager_attention_forward,
    "llama_eager": modeling_llama.eager_attention_forward,
}


def rms_forward_exact(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def rope_forward_exact(self, x, position_ids):
    cfg = self.config
    assert cfg.rope_parameters["rope_type"] == "default"
    base = float(cfg.rope_parameters["rope_theta"])
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def make_eager_exact(repeat_kv):
    def eager_attention_exact(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key_states = repeat_kv(key, module.num_key_value_groups)
        value_states = repeat_kv(value, module.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)  # in query dtype
        attn_output = torch.matmul(attn_weights, value_states)
        return attn_output.transpose(1, 2).contiguous(), attn_weights

    return eager_attention_exact


def set_exact_f64(on: bool) -> None:
    if on:
        modeling_qwen2.Qwen2RMSNorm.forward = rms_forward_exact
        modeling_llama.LlamaRMSNorm.forward = rms_forward_exact
        modeling_qwen2.Qwen2RotaryEmbedding.forward = rope_forward_exact
        modeling_llama.LlamaRotaryEmbedding.forward = rope_forward_exact
        modeling_qwen2.eager_attention_forward = make_eager_exact(modeling_qwen2.repeat_kv)
        modeling_llama.eager_attention_forward = make_eager_exact(modeling_llama.repeat_kv)
    else:
        modeling_qwen2.Qwen2RMSNorm.forward = ORIG["qwen_rms"]
        modeling_llama.LlamaRMSNorm.forward = ORIG["llama_rms"]
        modeling_qwen2.Qwen2RotaryEmbedding.forward = ORIG["qwen_rope"]
        modeling_llama.LlamaRotaryEmbedding.forward = ORIG["llama_rope"]
        modeling_qwen2.eager_attention_forward = ORIG["qwen_eager"]
        modeling_llama.eager_attention_forward = ORIG["llama_eager"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def reinit_base(model: nn.Module) -> None:
    """Larger random init so that logits are far from uniform."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_tokens" in name or "lm_head" in name:
                p.normal_(0.0, 0.5)
            elif "norm" in name:
                p.copy_(1.0 + torch.randn_like(p) * 0.1)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
            elif name.endswith(".weight") and p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                raise RuntimeError(f"unexpected parameter {name}")


def clean_config_json(folder: Path, rope_theta: float) -> None:
    """Add the top-level `rope_theta` that real Qwen2.5/Llama checkpoints carry
    (transformers v5 writes only `rope_parameters`); keeps both."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg["rope_theta"] = rope_theta
    cfg.pop("_name_or_path", None)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def split(tokens: list[int]) -> list[list[int]]:
    out, o = [], 0
    for n in SEQ_LENS:
        out.append(tokens[o : o + n])
        o += n
    return out


def effective_routes(routes: list[int]) -> list[int]:
    """Writer convention: position p runs with routes[p+1]; the last position of
    each sequence runs with its own route."""
    eff, o = [], 0
    for n in SEQ_LENS:
        r = routes[o : o + n]
        eff += [r[p + 1] if p + 1 < n else r[p] for p in range(n)]
        o += n
    return eff


def seq_logprobs(logits: torch.Tensor, toks: torch.Tensor) -> torch.Tensor:
    """logits [L, V], toks [L] -> [L] with 0 at position 0."""
    lsm = torch.log_softmax(logits, dim=-1)
    lp = lsm[:-1].gather(-1, toks[1:, None])[:, 0]
    return torch.cat([torch.zeros(1, dtype=lp.dtype), lp])


def write_json(path: Path, obj: dict) -> None:
    """One key per line, each list on a single line; floats in full (repr) precision."""
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items())
    path.write_text("{\n" + body + "\n}\n")


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max())


# --------------------------------------------------------------------------
# per-token routing on top of peft's lora.Linear modules
# --------------------------------------------------------------------------
class Router:
    def __init__(self) -> None:
        self.masks: dict[str, torch.Tensor] | None = None  # adapter -> [B, T]
        self.modules: list[LoraLinear] = []

    def install(self, peft_model: nn.Module) -> None:
        router = self

        def routed_forward(self: LoraLinear, x, *args, **kwargs):
            if router.masks is None:
                return self._orig_forward(x, *args, **kwargs)
            result = self.base_layer(x, *args, **kwargs)
            for name in ADAPTERS:
                if name not in self.lora_A:
                    continue  # this adapter does not target this module
                mask = router.masks[name].to(result.dtype)[..., None]
                delta = self.lora_B[name](self.lora_A[name](self.lora_dropout[name](x))) * self.scaling[name]
                result = result + mask * delta
            return result

        for m in peft_model.modules():
            if isinstance(m, LoraLinear):
                m._orig_forward = m.forward
                m.forward = types.MethodType(routed_forward, m)
                self.modules.append(m)

    def set_routes(self, eff_routes: list[int] | None) -> None:
        if eff_routes is None:
            self.masks = None
            return
        r = torch.tensor(eff_routes)[None, :]
        self.masks = {name: (r == k) for k, name in enumerate(ADAPTERS)}


def routed_logprobs(peft_model, router: Router, tokens, routes) -> torch.Tensor:
    out = []
    eff = effective_routes(routes)
    o = 0
    for n in SEQ_LENS:
        toks = torch.tensor(tokens[o : o + n])
        router.set_routes(eff[o : o + n])
        logits = peft_model(input_ids=toks[None], use_cache=False).logits[0]
        out.append(seq_logprobs(logits, toks))
        o += n
    router.set_routes(None)
    return torch.cat(out)


def plain_logprobs(model, tokens) -> torch.Tensor:
    out = []
    for toks in split(tokens):
        t = torch.tensor(toks)
        logits = model(input_ids=t[None], use_cache=False).logits[0]
        out.append(seq_logprobs(logits, t))
    return torch.cat(out)


# --------------------------------------------------------------------------
def main() -> None:
    torch.set_grad_enabled(True)
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}  transformers {transformers.__version__}  peft {peft.__version__}  "
          f"safetensors {safetensors.__version__}  numpy {np.__version__}")
    OUT.mkdir(parents=True, exist_ok=True)
    for p in ["model", "model-bf16-sharded", "model-f16", "llama-tied", "adapters"]:
        reset_dir(OUT / p)

    # ---------------- base Qwen2 model ----------------
    torch.manual_seed(0)
    cfg = Qwen2Config(**QWEN_CFG)
    cfg._attn_implementation = "eager"
    base = Qwen2ForCausalLM(cfg).to(torch.float32).eval()
    reinit_base(base)
    base.save_pretrained(OUT / "model")
    clean_config_json(OUT / "model", 10000.0)

    bf16 = Qwen2ForCausalLM(cfg).eval()
    bf16.load_state_dict(base.state_dict())
    bf16.to(torch.bfloat16).save_pretrained(OUT / "model-bf16-sharded", max_shard_size="20KB")
    clean_config_json(OUT / "model-bf16-sharded", 10000.0)
    f16 = Qwen2ForCausalLM(cfg).eval()
    f16.load_state_dict(base.state_dict())
    f16.to(torch.float16).save_pretrained(OUT / "model-f16")
    clean_config_json(OUT / "model-f16", 10000.0)
    del bf16, f16
    for d in ["model", "model-bf16-sharded", "model-f16"]:
        gc = OUT / d / "generation_config.json"
        if gc.exists():
            gc.unlink()

    # check what was written round-trips
    sd32 = {k: v.clone() for k, v in base.state_dict().items()}
    saved32 = load_file(OUT / "model" / "model.safetensors")
    assert set(saved32) == set(sd32), (set(saved32) ^ set(sd32))
    assert all(torch.equal(saved32[k], sd32[k]) for k in sd32)
    idx = json.loads((OUT / "model-bf16-sharded" / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) >= 2, shards
    savedbf = {}
    for s in shards:
        savedbf.update(load_file(OUT / "model-bf16-sharded" / s))
    assert all(torch.equal(savedbf[k], sd32[k].to(torch.bfloat16)) for k in sd32)
    saved16 = load_file(OUT / "model-f16" / "model.safetensors")
    assert all(torch.equal(saved16[k], sd32[k].to(torch.float16)) for k in sd32)
    print(f"saved model/ (f32), model-bf16-sharded/ ({len(shards)} shards), model-f16/ : round-trip exact")

    # ---------------- peft adapters ----------------
    peft_model = get_peft_model(
        base,
        LoraConfig(r=4, lora_alpha=8, target_modules=ALL7, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"),
        adapter_name="reason",
    )
    peft_model.add_adapter(
        "tool",
        LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
                   lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.normal_(0.0, 0.2)
    peft_model.save_pretrained(OUT / "adapters", selected_adapters=ADAPTERS)
    for name in ADAPTERS:
        d = OUT / "adapters" / name
        assert (d / "adapter_model.safetensors").exists() and (d / "adapter_config.json").exists(), d
        acfg = json.loads((d / "adapter_config.json").read_text())
        acfg["base_model_name_or_path"] = "../../model"
        acfg["target_modules"] = sorted(acfg["target_modules"])  # peft writes a set: fix the order
        (d / "adapter_config.json").write_text(json.dumps(acfg, indent=2, sort_keys=True) + "\n")
    for extra in (OUT / "adapters").iterdir():
        if extra.name not in ADAPTERS:
            (shutil.rmtree if extra.is_dir() else os.remove)(extra)
    adapter_keys = {n: sorted(load_file(OUT / "adapters" / n / "adapter_model.safetensors")) for n in ADAPTERS}
    print("saved adapters:", {n: len(k) for n, k in adapter_keys.items()})

    # ---------------- f64 reference computation ----------------
    peft_model = peft_model.to(torch.float64).eval()
    set_exact_f64(True)
    base64 = Qwen2ForCausalLM.from_pretrained(OUT / "model", dtype=torch.float64, attn_implementation="eager").eval()
    for k, v in base64.state_dict().items():
        assert torch.equal(v, sd32[k].to(torch.float64)), k

    # name map: peft parameter -> name in adapter_model.safetensors
    params: dict[str, dict[str, nn.Parameter]] = {n: {} for n in ADAPTERS}
    for pname, p in peft_model.named_parameters():
        for n in ADAPTERS:
            tag = f".{n}."
            if (".lora_A" + tag in pname) or (".lora_B" + tag in pname):
                params[n][pname.replace(tag, ".")] = p
    for n in ADAPTERS:
        assert sorted(params[n]) == adapter_keys[n], n
        saved = load_file(OUT / "adapters" / n / "adapter_model.safetensors")
        for k, p in params[n].items():
            assert saved[k].dtype == torch.float32 and torch.equal(saved[k].to(torch.float64), p.detach()), k

    for n in ADAPTERS:  # peft freezes the inactive adapter; we want grads of both
        for p in params[n].values():
            p.requires_grad_(True)
    for pname, p in peft_model.named_parameters():
        if ".lora_" not in pname:
            p.requires_grad_(False)

    router = Router()
    router.install(peft_model)

    # the case
    g = torch.Generator().manual_seed(1234)
    n_tok = sum(SEQ_LENS)
    tokens = torch.randint(0, QWEN_CFG["vocab_size"], (n_tok,), generator=g).tolist()
    while True:  # routes mixed: every sequence uses base, reason and tool at its writing positions
        routes = (torch.randint(0, 3, (n_tok,), generator=g) - 1).tolist()
        eff, o, ok = effective_routes(routes), 0, True
        for n in SEQ_LENS:
            ok &= set(eff[o : o + n]) == {-1, 0, 1} and set(routes[o + 1 : o + n]) == {-1, 0, 1}
            o += n
        if ok:
            break
    dl = torch.randn(n_tok, generator=g, dtype=torch.float64)
    o = 0
    for n in SEQ_LENS:
        dl[o] = 0.0
        o += n

    lp = routed_logprobs(peft_model, router, tokens, routes)
    loss = (dl * lp).sum()
    flat = [(n, k, p) for n in ADAPTERS for k, p in params[n].items()]
    grads = torch.autograd.grad(loss, [p for _, _, p in flat])
    grad = {n: {} for n in ADAPTERS}
    for (n, k, _), gr in zip(flat, grads):
        grad[n][k] = gr.detach().clone()
    with torch.no_grad():
        lp_base = plain_logprobs(base64, tokens)

    # ---------------- sanity checks ----------------
    print("\n== sanity checks (float64) ==")
    with torch.no_grad():
        # (0) size of the f64-exactness patches vs HF's own eager path
        set_exact_f64(False)
        hf_native = plain_logprobs(base64, tokens)
        set_exact_f64(True)
        print(f"(0) HF eager f64 as shipped (f32 RMSNorm/softmax/RoPE inside) vs exact-f64 patch: "
              f"max |dlogp| = {maxdiff(hf_native, lp_base):.3e}")
        base32 = Qwen2ForCausalLM.from_pretrained(OUT / "model", dtype=torch.float32, attn_implementation="eager").eval()
        set_exact_f64(False)
        lp32 = plain_logprobs(base32, tokens).double()
        set_exact_f64(True)
        print(f"    HF eager f32 vs reference: max |dlogp| = {maxdiff(lp32, lp_base):.3e}")

        # (a) all routes = 0 equals peft's ordinary forward with adapter "reason"
        peft_model.base_model.set_adapter("reason")
        a_routed = routed_logprobs(peft_model, router, tokens, [0] * n_tok)
        a_peft = plain_logprobs(peft_model, tokens)
        print(f"(a) routes=0 routed vs peft set_adapter('reason'): max |dlogp| = {maxdiff(a_routed, a_peft):.3e}")
        assert maxdiff(a_routed, a_peft) < 1e-12
        peft_model.base_model.set_adapter("tool")
        t_routed = routed_logprobs(peft_model, router, tokens, [1] * n_tok)
        t_peft = plain_logprobs(peft_model, tokens)
        print(f"    routes=1 routed vs peft set_adapter('tool'):   max |dlogp| = {maxdiff(t_routed, t_peft):.3e}")
        assert maxdiff(t_routed, t_peft) < 1e-12
        print(f"    (adapters matter: reason vs base {maxdiff(a_routed, lp_base):.3f}, "
              f"tool vs base {maxdiff(t_routed, lp_base):.3f}, mixed vs base {maxdiff(lp, lp_base):.3f})")

        # (b) all routes = -1 equals the base model
        b_routed = routed_logprobs(peft_model, router, tokens, [-1] * n_tok)
        with peft_model.disable_adapter():
            b_disabled = plain_logprobs(peft_model, tokens)
        print(f"(b) routes=-1 routed vs base model from model/:     max |dlogp| = {maxdiff(b_routed, lp_base):.3e}")
        print(f"    routes=-1 routed vs peft disable_adapter():    max |dlogp| = {maxdiff(b_routed, b_disabled):.3e}")
        assert maxdiff(b_routed, lp_base) < 1e-12 and maxdiff(b_routed, b_disabled) < 1e-12

        # (d) the saved adapter folders load back with peft and give the same numbers
        from peft import PeftModel
        fresh = Qwen2ForCausalLM.from_pretrained(OUT / "model", dtype=torch.float64, attn_implementation="eager")
        reloaded = PeftModel.from_pretrained(fresh, OUT / "adapters" / "reason", adapter_name="reason").eval()
        reloaded.load_adapter(OUT / "adapters" / "tool", adapter_name="tool")
        reloaded = reloaded.to(torch.float64)
        reloaded.base_model.set_adapter("reason")
        d_r = maxdiff(plain_logprobs(reloaded, tokens), a_peft)
        reloaded.base_model.set_adapter("tool")
        d_t = maxdiff(plain_logprobs(reloaded, tokens), t_peft)
        print(f"(d) PeftModel.from_pretrained(adapters/*) vs in-memory: reason {d_r:.3e}, tool {d_t:.3e}")
        assert d_r < 1e-12 and d_t < 1e-12
        del reloaded, fresh

        # the routing really is per token: position p only sees its own effective route
        eff = effective_routes(routes)
        print(f"    effective routes: {eff}")

    # (c) autograd vs central finite difference
    def loss_at() -> float:
        with torch.no_grad():
            return float((dl * routed_logprobs(peft_model, router, tokens, routes)).sum())

    probes = [
        ("reason", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", (1, 3)),
        ("reason", "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", (5, 2)),
        ("tool", "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", (0, 7)),
        ("tool", "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", (9, 1)),
    ]
    eps = 1e-6
    worst = 0.0
    for n, k, ij in probes:
        p = params[n][k]
        with torch.no_grad():
            old = p[ij].item()
            p[ij] = old + eps
            lplus = loss_at()
            p[ij] = old - eps
            lminus = loss_at()
            p[ij] = old
        fd = (lplus - lminus) / (2 * eps)
        ag = float(grad[n][k][ij])
        rel = abs(fd - ag) / max(abs(ag), 1e-12)
        worst = max(worst, rel)
        print(f"(c) {n:6s} {k.split('base_model.model.model.')[1]}{list(ij)}: autograd {ag:+.10e}  "
              f"fd {fd:+.10e}  rel err {rel:.2e}")
    assert worst < 1e-6, worst
    for n in ADAPTERS:
        gn = torch.sqrt(sum((v ** 2).sum() for v in grad[n].values()))
        print(f"    |grad {n}| = {float(gn):.6f}")

    # (e) tolerance hint: the same routed pipeline run by HF/peft in float32
    import copy
    set_exact_f64(False)
    m32 = copy.deepcopy(peft_model).to(torch.float32)
    r32 = Router()
    r32.install(m32)
    p32 = {n: {} for n in ADAPTERS}
    for pname, p in m32.named_parameters():
        for n in ADAPTERS:
            if f".lora_A.{n}." in pname or f".lora_B.{n}." in pname:
                p32[n][pname.replace(f".{n}.", ".")] = p.requires_grad_(True)
    lp32r = routed_logprobs(m32, r32, tokens, routes)
    keys32 = [(n, k) for n in ADAPTERS for k in params[n]]
    g32 = torch.autograd.grad((dl.float() * lp32r).sum(), [p32[n][k] for n, k in keys32])
    gerr = max(float((g.double() - grad[n][k]).abs().max()) for (n, k), g in zip(keys32, g32))
    gmax = max(float(grad[n][k].abs().max()) for n, k in keys32)
    print(f"(e) HF/peft float32 run of the same case: max |dlogp| = {maxdiff(lp32r.double(), lp.detach()):.3e}, "
          f"max |dgrad| = {gerr:.3e} (max |grad| = {gmax:.3f})")
    set_exact_f64(True)
    del m32

    # ---------------- write case + grads ----------------
    case = {
        "tokens": tokens,
        "seqLens": SEQ_LENS,
        "routes": routes,
        "dLdlogp": [float(x) for x in dl],
        "logprobs": [float(x) for x in lp.detach()],
        "logprobsBase": [float(x) for x in lp_base],
    }
    write_json(OUT / "case.json", case)
    for n in ADAPTERS:
        save_file({k: v.to(torch.float32).contiguous() for k, v in grad[n].items()},
                  OUT / f"grads-{n}.safetensors", metadata={"format": "pt"})

    # ---------------- llama, tied embeddings ----------------
    set_exact_f64(False)
    torch.manual_seed(0)
    lcfg = LlamaConfig(**LLAMA_CFG)
    lcfg._attn_implementation = "eager"
    llama = LlamaForCausalLM(lcfg).to(torch.float32).eval()
    reinit_base(llama)  # lm_head.weight is the same tensor as embed_tokens.weight
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()
    llama.save_pretrained(OUT / "llama-tied")
    clean_config_json(OUT / "llama-tied", 500000.0)
    gc = OUT / "llama-tied" / "generation_config.json"
    if gc.exists():
        gc.unlink()
    lsaved = load_file(OUT / "llama-tied" / "model.safetensors")
    assert "lm_head.weight" not in lsaved, "tied lm_head should not be stored"
    set_exact_f64(True)
    llama64 = LlamaForCausalLM.from_pretrained(OUT / "llama-tied", dtype=torch.float64,
                                               attn_implementation="eager").eval()
    assert torch.equal(llama64.lm_head.weight, llama64.model.embed_tokens.weight)
    for k, v in lsaved.items():
        assert torch.equal(llama64.state_dict()[k], v.to(torch.float64)), k
    g2 = torch.Generator().manual_seed(4321)
    ltokens = torch.randint(0, LLAMA_CFG["vocab_size"], (n_tok,), generator=g2).tolist()
    with torch.no_grad():
        llp = plain_logprobs(llama64, ltokens)
        set_exact_f64(False)
        llp_native = plain_logprobs(llama64, ltokens)
        set_exact_f64(True)
    print(f"llama-tied: HF eager f64 as shipped vs exact-f64 patch: max |dlogp| = {maxdiff(llp, llp_native):.3e}")
    write_json(OUT / "llama-tied" / "expected.json",
               {"tokens": ltokens, "seqLens": SEQ_LENS, "logprobs": [float(x) for x in llp]})

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"\nwrote {OUT.relative_to(REPO)} ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    sys.exit(main())
