//! Whole-model conformance: the SAME test bodies run on the cpu f32 engine
//! and the wgpu engine (one model code path, two backends) and are compared;
//! the wgpu engine runs them twice, once as is and once ("wgpu-split") with
//! its big weights split into row blocks and its LM head run in blocks of
//! token rows, as for a model over the binding limit.
//!
//! Tolerances (|x - ref| <= tol * max(1, |ref|) elementwise):
//! - cpu f32 vs wgpu: 1e-4 for logprobs, LoRA and base gradients, gradient
//!   norms and parameters after 3 AdamW steps (f32 sums in another order);
//! - generation vs forward on the same backend (property 8): 1e-5 on cpu,
//!   1e-4 on wgpu (cached single-token attention vs packed attention kernels);
//! - the transformers+peft fixture: 1e-4 on both (as for cpu f32).
//! The lazy update is exact on both: a slot with no routed token keeps its
//! parameters and moments bit for bit.
//!
//! The wgpu half needs an adapter (CI: Mesa lavapipe, DART_WGPU_ADAPTER=llvmpipe
//! or auto); without one every test fails unless DART_SKIP_WGPU=1.
#![cfg(feature = "wgpu")]
mod common;
use common::*;
use dart_core::checkpoint::{load_adapter, load_model};
use dart_core::generate::{GenPlan, SampleOptions, Session, StopReason};
use dart_core::io::TensorStore;
use dart_core::roles::{Role, RoleRules};
use dart_core::backend::wgpu::with_max_binding_bytes;
use dart_core::{AdamW, BackendKind, Engine, EngineOptions, ModelConfig, StepOptions};

const CROSS: f64 = 1e-4;

/// The split size of the "wgpu-split" backend: 256 bytes (64 f32) splits
/// the tiny models' embeddings, LM head and q/o/gate/up/down weights (and
/// their gradients and moments) into 2-4 row blocks (the fixture model's
/// into up to 48), and the logits into blocks of 3 token rows (vocabulary
/// 19; 8 rows at vocabulary 8), so every body below also runs on the split
/// path. `lm_head_in_row_blocks_agrees` checks other block sizes.
const SPLIT_BYTES: u64 = 256;

/// (name, options) of every backend under test: cpu, wgpu, and wgpu with
/// weights split into row blocks ("wgpu-split", see `SPLIT_BYTES`).
fn backends() -> Vec<(&'static str, EngineOptions)> {
    let mut v = vec![("cpu", EngineOptions { threads: 2, seed: 7, backend: BackendKind::Cpu })];
    if !std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1") {
        v.push(("wgpu", EngineOptions { threads: 2, seed: 7, backend: BackendKind::Wgpu }));
        v.push(("wgpu-split", EngineOptions { threads: 2, seed: 7, backend: BackendKind::Wgpu }));
    }
    v
}

/// The backend name an engine of backend `name` reports.
fn reported(name: &str) -> &str {
    name.trim_end_matches("-split")
}

/// Checks that a "wgpu-split" engine did split its big tensors.
fn check_split(name: &str, e: &Engine<f32>) {
    let parts = e.base_parts();
    if name.ends_with("-split") {
        assert!(parts[0] > 1, "{name}: the embedding is split ({parts:?})");
        assert!(parts.iter().filter(|&&p| p > 1).count() > 2, "{name}: several tensors are split ({parts:?})");
    } else if std::env::var_os(dart_core::backend::wgpu::MAX_BINDING_ENV).is_none() {
        assert!(parts.iter().all(|&p| p == 1), "{name}: nothing is split ({parts:?})");
    }
}

fn engine(name: &str, o: &EngineOptions, cfg: ModelConfig, seed: u64) -> Engine<f32> {
    let e = Engine::<f32>::random(cfg, seed, o).unwrap_or_else(|err| {
        panic!("{name} engine: {err} (set DART_SKIP_WGPU=1 to run the cpu half only)")
    });
    assert_eq!(e.backend_info().backend, reported(name));
    check_split(name, &e);
    e
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    let mut v = vec![("qwen2 untied", tiny_config(false, "qwen2")), ("llama tied", tiny_config(true, "llama"))];
    v.extend(variant_configs());
    v
}

/// Runs `body` on every backend and returns its outputs by backend (the
/// "wgpu-split" run with engines created under the lowered split size).
fn on_each<R>(body: impl Fn(&str, &EngineOptions) -> R) -> Vec<(&'static str, R)> {
    backends()
        .into_iter()
        .map(|(n, o)| {
            let r = if n.ends_with("-split") { with_max_binding_bytes(SPLIT_BYTES, || body(n, &o)) } else { body(n, &o) };
            (n, r)
        })
        .collect()
}

/// Every backend's output against the cpu's, tensor by tensor.
fn agree(what: &str, outs: &[(&str, Vec<Vec<f32>>)], tol: f64) {
    let (_, want) = &outs[0];
    for (name, got) in &outs[1..] {
        assert_eq!(got.len(), want.len(), "{what}: tensor count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_close(&format!("{what} [{name} vs cpu] tensor {i}"), &f64s(g), &f64s(w), tol);
        }
    }
}

#[test]
fn logprobs_with_two_routed_adapters_agree() {
    let b = batch();
    for (cname, cfg) in configs() {
        let outs = on_each(|name, o| {
            let mut e = engine(name, o, cfg.clone(), 3);
            two_adapters(&mut e);
            let base = e.forward(&b.tokens, &b.seq_lens, &vec![-1; b.tokens.len()]).unwrap();
            let routed = e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
            assert!(base.iter().zip(&routed).any(|(x, y)| x != y), "adapters change the logprobs");
            vec![base, routed]
        });
        agree(&format!("{cname} logprobs"), &outs, CROSS);
    }
}

#[test]
fn lora_and_base_gradients_agree() {
    let b = batch();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    for (cname, cfg) in configs() {
        for train_base in [false, true] {
            let outs = on_each(|name, o| {
                let mut e = engine(name, o, cfg.clone(), 3);
                two_adapters(&mut e);
                e.set_train_base(train_base);
                e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
                e.backward(&g).unwrap();
                // A second forward/backward accumulates.
                e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
                e.backward(&g).unwrap();
                let mut t: Vec<Vec<f32>> = (0..2).flat_map(|s| e.adapter(s).unwrap().grads().into_iter().cloned().collect::<Vec<_>>()).collect();
                if train_base {
                    t.extend(e.base_grads().unwrap().fields().into_iter().cloned());
                }
                assert!(t.iter().all(|x| x.iter().any(|&v| v != 0.0)), "every tensor gets a gradient");
                t
            });
            agree(&format!("{cname} gradients (train_base {train_base})"), &outs, CROSS);
        }
    }
}

/// `forward_wanted`: the LM head only on the tokens a mask wants. Their
/// logprobs, and the gradients of a loss on them, equal those of a full
/// forward (with dL/dlogp zeroed off the mask) on the same backend within
/// 1e-6; the others' logprobs are 0 and their dL/dlogp is ignored; a mask
/// that wants nothing leaves every gradient 0. Backends agree within CROSS.
#[test]
fn only_the_wanted_logprobs_are_computed() {
    let b = batch();
    let n = b.tokens.len();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    // Every third token wanted, and one sequence's tokens not at all.
    let wanted: Vec<u8> = (0..n).map(|t| u8::from(t % 3 != 1 && t >= b.seq_lens[0] as usize)).collect();
    assert!(wanted.iter().any(|&w| w == 0) && wanted.iter().any(|&w| w == 1));
    let g_on_mask: Vec<f32> = g.iter().zip(&wanted).map(|(&x, &w)| if w == 1 { x } else { 0.0 }).collect();
    for (cname, cfg) in configs() {
        let outs = on_each(|name, o| {
            let grads = |e: &Engine<f32>| -> Vec<Vec<f32>> {
                let mut t: Vec<Vec<f32>> = (0..2).flat_map(|s| e.adapter(s).unwrap().grads().into_iter().cloned().collect::<Vec<_>>()).collect();
                t.extend(e.base_grads().unwrap().fields().into_iter().cloned());
                t
            };
            let fresh = || {
                let mut e = engine(name, o, cfg.clone(), 3);
                two_adapters(&mut e);
                e.set_train_base(true);
                e
            };
            let mut full = fresh();
            let lp_full = full.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
            full.backward(&g_on_mask).unwrap();
            let mut part = fresh();
            let lp = part.forward_wanted(&b.tokens, &b.seq_lens, &b.routes, Some(&wanted)).unwrap();
            part.backward(&g).unwrap();
            for t in 0..n {
                if wanted[t] == 1 {
                    assert!((lp[t] - lp_full[t]).abs() <= 1e-6 * lp_full[t].abs().max(1.0), "{name} {cname}: token {t}: {} vs {}", lp[t], lp_full[t]);
                } else {
                    assert_eq!(lp[t], 0.0, "{name} {cname}: token {t} is not wanted");
                }
            }
            let (want, got) = (grads(&full), grads(&part));
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{name} {cname}: gradient tensor {i}, masked vs full"), &f64s(x), &f64s(y), 1e-6);
            }
            assert!(got.iter().all(|x| x.iter().any(|&v| v != 0.0)), "{name} {cname}: every tensor gets a gradient");
            let mut none = fresh();
            let lp0 = none.forward_wanted(&b.tokens, &b.seq_lens, &b.routes, Some(&vec![0; n])).unwrap();
            assert!(lp0.iter().all(|&x| x == 0.0), "{name} {cname}: nothing wanted, every logprob 0");
            none.backward(&g).unwrap();
            assert!(grads(&none).iter().all(|x| x.iter().all(|&v| v == 0.0)), "{name} {cname}: nothing wanted, no gradient");
            let mut t = vec![lp];
            t.extend(got);
            t
        });
        agree(&format!("{cname} wanted logprobs and gradients"), &outs, CROSS);
    }
}

#[test]
fn three_adamw_steps_with_clipping_and_the_lazy_update_agree() {
    let b = batch();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    // eps 1e-3 keeps the first Adam steps away from sign(g) for tiny |g|, where
    // rounding differences between backends would flip the update.
    let opts = StepOptions { adamw: AdamW { lr: 0.02, weight_decay: 0.01, max_grad_norm: 0.5, eps: 1e-3, ..Default::default() }, slots: None };
    let only0: Vec<i32> = b.routes.iter().map(|&r| if r == 1 { 0 } else { r }).collect();
    let outs = on_each(|name, o| {
        let mut e = engine(name, o, tiny_config(false, "qwen2"), 5);
        two_adapters(&mut e);
        e.set_train_base(true);
        let mut reports = Vec::new();
        for k in 0..3 {
            if k == 2 {
                // Slot 1 gets no token in step 3: lazy update, bit for bit.
                let before = e.adapter(1).unwrap().params().into_iter().cloned().collect::<Vec<_>>();
                let st = e.optimizer_state(1).unwrap();
                e.forward(&b.tokens, &b.seq_lens, &only0).unwrap();
                e.backward(&g).unwrap();
                let (r, base) = e.step(&opts).unwrap();
                assert!(r[0].updated && !r[1].updated && r[1].tokens == 0, "{name}: {r:?}");
                assert!(base.unwrap().updated);
                let after = e.adapter(1).unwrap().params().into_iter().cloned().collect::<Vec<_>>();
                let bits = |x: &Vec<Vec<f32>>| x.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&before), bits(&after), "{name}: idle slot parameters");
                let st2 = e.optimizer_state(1).unwrap();
                assert_eq!((bits(&st.m), bits(&st.v), st.step), (bits(&st2.m), bits(&st2.v), st2.step), "{name}: idle slot moments");
                reports.push(r);
            } else {
                e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
                e.backward(&g).unwrap();
                let (r, base) = e.step(&opts).unwrap();
                assert!(r.iter().all(|s| s.updated) && base.as_ref().unwrap().updated);
                reports.push(r);
            }
        }
        assert!(reports.iter().flatten().any(|r| r.clipped), "{name}: clipping is exercised");
        let mut t: Vec<Vec<f32>> = (0..2).flat_map(|s| e.adapter(s).unwrap().params().into_iter().cloned().collect::<Vec<_>>()).collect();
        for s in 0..2 {
            let st = e.optimizer_state(s).unwrap();
            t.extend(st.m);
            t.extend(st.v);
        }
        t.extend(e.weights().fields().into_iter().cloned());
        t.push(reports.iter().flatten().map(|r| r.grad_norm as f32).collect());
        t.push(reports.iter().flatten().map(|r| r.clipped as u8 as f32).collect());
        t.push(reports.iter().flatten().map(|r| r.tokens as f32).collect());
        t.push(e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap());
        t
    });
    agree("after 3 AdamW steps", &outs, CROSS);
}

/// Rolls out 3 sequences with tool calls and checks generation logprobs
/// against forward on the same backend; returns how many tool calls ran.
fn generation_matches_forward(e: &mut Engine<f32>, plan: GenPlan, two_pass: bool, seed: u64, tol: f64) -> usize {
    let rules = RoleRules::new(vec![5], vec![6]).unwrap();
    let mut s = Session::new(e, plan.clone(), rules, seed).unwrap();
    for p in [&[1, 2, 3][..], &[4], &[2, 2, 7, 1]] {
        s.add_sequence(e, p).unwrap();
    }
    let opts = SampleOptions { max_new_tokens: 10, temperature: 1.5, ..Default::default() };
    for turn in 0..3 {
        for g in s.generate(e, &opts).unwrap() {
            if g.stop == StopReason::ToolCall {
                s.extend(e, g.seq, &[turn as i32 + 1, 0, 3], Role::Observation).unwrap();
            }
        }
    }
    let mut calls = 0;
    for q in &s.seqs {
        let n = q.tokens.len();
        calls += q.roles.iter().filter(|&&r| r == Role::Observation).count();
        let passes: Vec<(Vec<i32>, Vec<Role>)> = if two_pass {
            vec![(vec![plan.agents[0][0]; n], vec![Role::Reasoning]), (vec![plan.agents[1][0]; n], vec![Role::Action])]
        } else {
            vec![(q.routes.clone(), vec![Role::Reasoning, Role::Action])]
        };
        for (routes, roles) in passes {
            let lp = e.forward(&q.tokens, &[n as i32], &routes).unwrap();
            for t in 0..n {
                if roles.contains(&q.roles[t]) {
                    let (f, g) = (lp[t] as f64, q.logprobs[t] as f64);
                    assert!((f - g).abs() <= tol * f.abs().max(1.0), "token {t} ({:?}): forward {f} vs generate {g}", q.roles[t]);
                }
            }
        }
    }
    calls
}

#[test]
fn generation_logprobs_equal_forward_logprobs_on_every_backend() {
    on_each(|name, o| {
        let tol = if name == "cpu" { 1e-5 } else { 1e-4 };
        let mut calls = 0;
        for seed in 0..2 {
            let mut cfg = tiny_config(false, "qwen2");
            cfg.vocab_size = 8; // the one-token tags come up often
            let mut e = engine(name, o, cfg, seed);
            two_adapters(&mut e);
            calls += generation_matches_forward(&mut e, GenPlan::single([0, 0, 1, 0]), false, seed, tol);
            calls += generation_matches_forward(&mut e, GenPlan::two_agents(-1, 1), true, seed, tol);
        }
        assert!(calls > 0, "{name}: no tool call happened: the test would not cover the switch");
    });
}

#[test]
fn peft_fixture_matches_on_every_backend() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Case {
        tokens: Vec<i32>,
        seq_lens: Vec<i32>,
        routes: Vec<i32>,
        d_ldlogp: Vec<f64>,
        logprobs: Vec<f64>,
        logprobs_base: Vec<f64>,
    }
    // peft-tiny (Qwen2) and the model-family fixtures (Llama mlp_bias,
    // llama3 RoPE, Qwen3, YaRN).
    let mut roots = vec![fixture("")];
    roots.extend(MODEL_FIXTURES.iter().map(|m| model_fixture(m)));
    for root in roots {
    let fixture = |p: &str| root.join(p);
    let c: Case = serde_json::from_str(&std::fs::read_to_string(fixture("case.json")).unwrap()).unwrap();
    on_each(|name, o| {
        let mut e = load_model::<f32>(&fixture("model"), o).unwrap();
        assert_eq!(e.backend_info().backend, reported(name));
        check_split(name, &e);
        let base = e.forward(&c.tokens, &c.seq_lens, &vec![-1; c.tokens.len()]).unwrap();
        assert_close(&format!("{name} logprobsBase"), &f64s(&base), &c.logprobs_base, 1e-4);
        assert_eq!(load_adapter(&mut e, &fixture("adapters/reason")).unwrap(), 0);
        assert_eq!(load_adapter(&mut e, &fixture("adapters/tool")).unwrap(), 1);
        let lp = e.forward(&c.tokens, &c.seq_lens, &c.routes).unwrap();
        assert_close(&format!("{name} logprobs"), &f64s(&lp), &c.logprobs, 1e-4);
        e.backward(&c.d_ldlogp.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap();
        for (slot, file) in [(0, "grads-reason.safetensors"), (1, "grads-tool.safetensors")] {
            let store = TensorStore::open_files(&[fixture(file)]).unwrap();
            let a = e.adapter(slot).unwrap();
            for ((tname, shape), grad) in a.names_shapes().iter().zip(a.grads()) {
                let want: Vec<f64> = store.get::<f64>(tname, shape).unwrap();
                assert_close(&format!("{name} {} {tname}", root.display()), &f64s(grad), &want, 1e-4);
            }
        }
    });
    }
}

/// The LM head in blocks of token rows: wgpu engines whose split size
/// holds the logits of 1 row (76 bytes = 19 f32) or 5 rows (blocks of 5, 5
/// and 2 of the 12 tokens) give the cpu's logprobs, LoRA and base gradients
/// (the LM head's and the tied embedding's from every block) within
/// `CROSS`, and generation on them (the decode LM head in blocks, one per
/// item at 76 bytes) records the logprobs forward recomputes.
#[test]
fn lm_head_in_row_blocks_agrees() {
    if std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1") {
        return;
    }
    let b = batch();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    let body = |name: &str, o: &EngineOptions, cfg: ModelConfig| {
        let mut e = Engine::<f32>::random(cfg, 3, o).unwrap_or_else(|err| panic!("{name} engine: {err}"));
        two_adapters(&mut e);
        e.set_train_base(true);
        let mut t = vec![e.forward(&b.tokens, &b.seq_lens, &vec![-1; b.tokens.len()]).unwrap()];
        for _ in 0..2 {
            t.push(e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap());
            e.backward(&g).unwrap();
        }
        t.extend((0..2).flat_map(|s| e.adapter(s).unwrap().grads().into_iter().cloned().collect::<Vec<_>>()));
        t.extend(e.base_grads().unwrap().fields().into_iter().cloned());
        (e, t)
    };
    let cpu = EngineOptions { threads: 2, seed: 7, backend: BackendKind::Cpu };
    let gpu = EngineOptions { backend: BackendKind::Wgpu, ..cpu.clone() };
    for (cname, cfg) in configs() {
        assert_eq!(cfg.vocab_size, 19);
        let (e, want) = body("cpu", &cpu, cfg.clone());
        assert_eq!(e.lm_head_rows_per_block(), usize::MAX);
        for (split, rows) in [(76u64, 1usize), (380, 5)] {
            let name = format!("wgpu split {split}");
            let (mut e, got) = with_max_binding_bytes(split, || body(&name, &gpu, cfg.clone()));
            assert_eq!(e.lm_head_rows_per_block(), rows, "{name}");
            agree(&format!("{cname} LM head in blocks of {rows} rows"), &[("cpu", want.clone()), ("wgpu", got)], CROSS);
            let plan = GenPlan::single([0, 0, 1, 0]);
            generation_matches_forward(&mut e, plan, false, 1, 1e-4);
        }
    }
}

#[test]
fn backend_info_and_typed_errors() {
    let e = Engine::<f32>::random(tiny_config(false, "qwen2"), 1, &EngineOptions { backend: BackendKind::Cpu, ..Default::default() }).unwrap();
    let i = e.backend_info();
    assert_eq!((i.backend.as_str(), i.device_type.as_str()), ("cpu", "Cpu"));
    // An f64 engine cannot run on wgpu (it computes in f32); auto falls back to cpu.
    let err = Engine::<f64>::random(tiny_config(false, "qwen2"), 1, &EngineOptions { backend: BackendKind::Wgpu, ..Default::default() }).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "DART_INVALID_ARGUMENT");
    let e = Engine::<f64>::random(tiny_config(false, "qwen2"), 1, &EngineOptions { backend: BackendKind::Auto, ..Default::default() }).unwrap();
    assert_eq!(e.backend_info().backend, "cpu");
    on_each(|name, o| {
        let e = engine(name, o, tiny_config(false, "qwen2"), 1);
        let i = e.backend_info();
        assert!(!i.adapter.is_empty() && !i.device_type.is_empty(), "{i:?}");
    });
}
