//! dart-bench generate: CPU generation benchmark of the dart-core rollout
//! engine (issue 4, item 5 "Speed") -> bench/results/generate.json.
//!
//! `generate configs [--quick]` prints the configurations as JSON (read by
//! scripts/bench/torch_generate.py, so both sides time the same shapes).
//! `generate run --out FILE [--threads N] [--quick] [--torch-json FILE | --torch-null REASON] [--only MODEL]`
//! times, per model config of engine-cpu.json (random weights, f32, DART plan
//! with two rank-8 adapters on all 7 targets, B ~ N(0, 0.02) so both cost
//! real work):
//!   - decode tokens/s at batch 1, 16 and 64: a session with `batch` prompts
//!     of `prompt_len` tokens; `generate(max_new_tokens = 1)` encodes the
//!     prompts (not timed as decode), then `generate(max_new_tokens = N)` is
//!     the decode time: tokens/s = batch * N / that time;
//!   - long-context decode: the same at batch 16 after 1000-token prompts
//!     (`long_decode`: rollouts are long; there the KV cache dominates);
//!   - prefill tokens/s: batch 16 x 128-token prompts, time of
//!     `generate(max_new_tokens = 1)` (encode + LM head of the last rows + one sample).
//! Greedy (temperature 0), no eos, role tags that random models do not write,
//! so every sequence runs to its budget.
//! See scripts/bench/run.sh (`pnpm bench`).
use dart_bench::common::{
    Args,
    median, model_shapes, reference_adapter_json, round, write_result, Rng,
    ALPHA_PER_RANK, DART_RANK, TARGETS,
};
use dart_core::generate::{GenPlan, SampleOptions, Session};
use dart_core::ops::matmul::matmul;
use dart_core::roles::RoleRules;
use dart_core::{AdapterSpec, Engine, EngineOptions, ModelConfig};
use serde_json::{json, Value};
use std::time::Instant;

const B_INIT_STD: f64 = 0.02;
// The transformers reference attaches one unmerged peft LoRA of REF_RANK
// (dart_bench::common) on every token (torch cannot route per token); each of
// our tokens goes through one rank-8 slot, so the reference does at least as
// much LoRA work.
/// Routes per role (P, R, A, O): prompt rows on slot 1, reasoning (every
/// decoded token here) on slot 0, tool calls on slot 1.
const PLAN_ROUTES: [i32; 4] = [1, 0, 1, 1];
const BATCHES: [usize; 3] = [1, 16, 64];
const PREFILL_BATCH: usize = 16;
const PREFILL_LEN: usize = 128;
const PROMPT_LEN: usize = 32;
/// A rollout-length context: batch 16 decoding after 1000-token prompts
/// (KV cache streaming and growth dominate here, not the weights).
const LONG_BATCH: usize = 16;
const LONG_PROMPT: usize = 1000;
/// Issue 4 target: ours / transformers tokens/s at batch 16 >= 2.
const TARGET_RATIO_B16: f64 = 2.0;

struct GenConfig {
    name: &'static str,
    hf: Value,
    max_new_tokens: usize,
    /// Minimum timed seconds per measurement (repeat until reached, at most `max_reps`).
    min_time: f64,
    max_reps: usize,
}

fn gen_configs(quick: bool) -> Vec<GenConfig> {
    let [qwen, smol] = model_shapes();
    vec![
        GenConfig {
            name: qwen.name,
            hf: qwen.hf,
            max_new_tokens: if quick { 8 } else { 64 },
            min_time: if quick { 0.0 } else { 1.5 },
            max_reps: if quick { 1 } else { 5 },
        },
        GenConfig {
            name: smol.name,
            hf: smol.hf,
            max_new_tokens: if quick { 4 } else { 32 },
            min_time: if quick { 0.0 } else { 1.5 },
            max_reps: if quick { 1 } else { 3 },
        },
    ]
}

fn configs_json(quick: bool) -> Value {
    let cfgs: Vec<Value> = gen_configs(quick)
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "hf_config": c.hf, "batches": BATCHES, "prompt_len": PROMPT_LEN,
                "max_new_tokens": c.max_new_tokens, "min_time": c.min_time, "max_reps": c.max_reps,
                "prefill": {"batch": PREFILL_BATCH, "prompt_len": PREFILL_LEN},
                "long": {"batch": LONG_BATCH, "prompt_len": if quick { 64 } else { LONG_PROMPT }},
                "reference_adapter": reference_adapter_json(),
            })
        })
        .collect();
    json!({ "configs": cfgs })
}

// ---- the benchmark ----------------------------------------------------------

fn build_engine(cfg: &ModelConfig, threads: usize) -> Engine<f32> {
    let opts = EngineOptions { threads, seed: 0, backend: dart_core::BackendKind::Cpu };
    let mut engine = Engine::<f32>::random(cfg.clone(), 1234, &opts).expect("random engine");
    for i in 0..2 {
        let mut spec = AdapterSpec::new(DART_RANK, ALPHA_PER_RANK * DART_RANK as f64, &TARGETS, 100 + i).expect("adapter spec");
        spec.b_init_std = B_INIT_STD;
        engine.add_adapter(spec).expect("add adapter");
    }
    engine
}

fn prompts(vocab: usize, batch: usize, len: usize, seed: u64) -> Vec<Vec<i32>> {
    let mut rng = Rng(0xD1B54A32D192ED03 ^ seed.wrapping_mul(0x9E3779B97F4A7C15));
    // Stay below the tag tokens (the top 4 ids).
    (0..batch).map(|_| (0..len).map(|_| rng.below(vocab - 4) as i32).collect()).collect()
}

fn rules(vocab: usize) -> RoleRules {
    let v = vocab as i32;
    // Two-token tags at the top of the vocabulary: a random model does not
    // write them (checked below: every sequence must stop on length).
    RoleRules::new(vec![v - 1, v - 2], vec![v - 3, v - 4]).expect("rules")
}

fn sample_opts(max_new_tokens: usize) -> SampleOptions {
    SampleOptions { max_new_tokens, temperature: 0.0, top_p: 1.0, top_k: 0, eos: vec![], stop: vec![], pause_on_tool_call: true }
}

/// One session: encode `prompts` (generate 1 token), then decode `n` more.
/// Returns (prefill seconds, decode seconds, decode tokens).
fn run_session(engine: &Engine<f32>, prompts: &[Vec<i32>], n: usize) -> (f64, f64, usize) {
    let vocab = engine.config().vocab_size;
    let mut s = Session::new(engine, GenPlan::single(PLAN_ROUTES), rules(vocab), 7).expect("session");
    for p in prompts {
        s.add_sequence(engine, p).expect("add sequence");
    }
    let t0 = Instant::now();
    let g1 = s.generate(engine, &sample_opts(1)).expect("generate (prefill)");
    let t1 = Instant::now();
    assert!(g1.iter().all(|g| g.tokens.len() == 1), "prefill step must write one token per sequence");
    let mut decoded = 0;
    let mut t2 = t1;
    if n > 0 {
        let g = s.generate(engine, &sample_opts(n)).expect("generate (decode)");
        t2 = Instant::now();
        for x in &g {
            assert_eq!(x.tokens.len(), n, "sequence {} stopped early ({}), the bench needs every sequence to run to its budget", x.seq, x.stop.name());
            decoded += x.tokens.len();
        }
        std::hint::black_box(&g);
    }
    ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), decoded)
}

/// Repeats `f` until `min_time` seconds of timed work (>= 1 rep, <= max_reps).
fn repeat(min_time: f64, max_reps: usize, mut f: impl FnMut() -> f64) -> Vec<f64> {
    let mut times = Vec::new();
    let mut total = 0.0;
    while times.is_empty() || (total < min_time && times.len() < max_reps) {
        let t = f();
        total += t;
        times.push(t);
    }
    times
}

/// Time of the GEMMs one decode step does at batch `m` (the 7 frozen
/// projections of every layer and the LM head), with the public matmul, for
/// the phase breakdown.
fn gemm_step_estimate(cfg: &ModelConfig, m: usize, threads: usize) -> Value {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let hd = cfg.head_dim();
    let (qw, kvw) = (cfg.num_attention_heads * hd, cfg.kv_heads() * hd);
    let mut rng = Rng(42);
    let mut rv = |len: usize| -> Vec<f32> { (0..len).map(|_| (rng.below(2001) as f32 - 1000.0) * 1e-3).collect() };
    // (name, n, k) of y[m,n] = x[m,k] W[n,k]^T
    let shapes = [("q", qw, d), ("k", kvw, d), ("v", kvw, d), ("o", d, qw), ("gate", f, d), ("up", f, d), ("down", d, f)];
    let mut per_layer = 0.0;
    let mut parts = serde_json::Map::new();
    for (name, n, k) in shapes {
        let a = rv(m * k);
        let w = rv(n * k);
        let mut out = vec![0f32; m * n];
        let mut ts = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            pool.install(|| matmul::<f32>(&mut out, &a, &w, m, n, k, false, true, false));
            ts.push(t.elapsed().as_secs_f64());
        }
        let med = median(&ts[1..]);
        per_layer += med;
        parts.insert(name.into(), Value::from(med));
    }
    let a = rv(m * d);
    let w = rv(v * d);
    let mut out = vec![0f32; m * v];
    let mut ts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        pool.install(|| matmul::<f32>(&mut out, &a, &w, m, v, d, false, true, false));
        ts.push(t.elapsed().as_secs_f64());
    }
    let head = median(&ts[1..]);
    let layers = cfg.num_hidden_layers as f64;
    json!({
        "batch": m,
        "projection_gemms_per_layer_s": parts,
        "projections_all_layers_s": per_layer * layers,
        "lm_head_s": head,
        "frozen_gemms_per_step_s": per_layer * layers + head,
    })
}

fn bench_model(gc: &GenConfig, threads: usize, torch: Option<&Value>, quick: bool) -> Value {
    let cfg = ModelConfig::from_json(&gc.hf.to_string()).expect("bench config is valid");
    let vocab = cfg.vocab_size;
    let t = Instant::now();
    let engine = build_engine(&cfg, threads);
    println!("model {} (built in {:.1}s): prompts of {PROMPT_LEN} tokens, max_new_tokens {}", gc.name, t.elapsed().as_secs_f64(), gc.max_new_tokens);
    // Warm-up: one small session (page faults, rope tables, pool start).
    run_session(&engine, &prompts(vocab, 2, PROMPT_LEN, 99), 2);
    let tc = torch.and_then(|t| t.get("configs")).and_then(|c| c.get(gc.name));
    let decode_at = |b: usize, prompt_len: usize, theirs: Option<f64>| {
        let ps = prompts(vocab, b, prompt_len, (b + prompt_len) as u64);
        let mut prefill_s = Vec::new();
        let mut toks = 0;
        let times = repeat(gc.min_time, gc.max_reps, || {
            let (p, d, n) = run_session(&engine, &ps, gc.max_new_tokens);
            prefill_s.push(p);
            toks = n;
            d
        });
        let med = median(&times);
        let tps = toks as f64 / med;
        let ratio = theirs.map(|th| tps / th);
        println!(
            "  decode batch {b:>2} after {prompt_len}: {toks} tokens in {med:.3}s = {tps:.1} tok/s ({:.2} ms/step; reps {}){}",
            1e3 * med / gc.max_new_tokens as f64,
            times.len(),
            match (theirs, ratio) {
                (Some(th), Some(r)) => format!("; transformers {th:.1} tok/s => ratio {r:.2}"),
                _ => String::new(),
            }
        );
        json!({
            "batch": b, "prompt_len": prompt_len, "new_tokens": toks, "max_new_tokens": gc.max_new_tokens,
            "median_s": med, "all_s": times, "ms_per_step": round(1e3 * med / gc.max_new_tokens as f64, 3),
            "tokens_per_s": round(tps, 1),
            "prompt_encode_median_s": median(&prefill_s),
            "transformers_tokens_per_s": theirs,
            "ratio_vs_transformers": ratio.map(|r| round(r, 3)),
        })
    };
    let decode: Vec<Value> = BATCHES
        .iter()
        .map(|&b| decode_at(b, PROMPT_LEN, tc.and_then(|c| c["decode"].get(b.to_string())).and_then(|x| x["tokens_per_s"].as_f64())))
        .collect();
    let long_prompt = if quick { 64 } else { LONG_PROMPT };
    let long_decode = decode_at(LONG_BATCH, long_prompt, tc.and_then(|c| c["long_decode"]["tokens_per_s"].as_f64()));
    // Prefill.
    let ps = prompts(vocab, PREFILL_BATCH, PREFILL_LEN, 1000);
    let times = repeat(gc.min_time, gc.max_reps, || run_session(&engine, &ps, 0).0);
    let med = median(&times);
    let n = PREFILL_BATCH * PREFILL_LEN;
    let tps = n as f64 / med;
    let theirs = tc.and_then(|c| c["prefill"]["tokens_per_s"].as_f64());
    println!(
        "  prefill {PREFILL_BATCH} x {PREFILL_LEN}: {med:.3}s = {tps:.0} tok/s{}",
        theirs.map(|th| format!("; transformers {th:.0} tok/s => ratio {:.2}", tps / th)).unwrap_or_default()
    );
    let prefill = json!({
        "batch": PREFILL_BATCH, "prompt_len": PREFILL_LEN, "tokens": n, "median_s": med, "all_s": times,
        "tokens_per_s": round(tps, 1),
        "measured_as": "Session::generate(max_new_tokens = 1) on fresh sequences: encode all prompt rows + LM head of the last rows + one greedy sample",
        "transformers_tokens_per_s": theirs,
        "ratio_vs_transformers": theirs.map(|th| round(tps / th, 3)),
    });
    // GEMM-only lower bound of one decode step, for the phase breakdown.
    let gemm = if quick { Vec::new() } else { BATCHES.iter().map(|&b| gemm_step_estimate(&cfg, b, threads)).collect() };
    let ratio_by_batch: serde_json::Map<String, Value> =
        decode.iter().map(|d| (d["batch"].to_string(), d["ratio_vs_transformers"].clone())).collect();
    json!({
        "name": gc.name,
        "hf_config": gc.hf,
        "decode": decode,
        "prefill": prefill,
        "long_decode": long_decode,
        "ratio_vs_transformers": ratio_by_batch,
        "gemm_per_decode_step": gemm,
        "transformers": tc.cloned(),
    })
}

fn usage() -> ! {
    eprintln!("usage: generate configs [--quick]\n       generate run --out FILE [--threads N] [--quick] [--torch-json FILE | --torch-null REASON] [--only MODEL]");
    std::process::exit(2)
}

fn main() {
    let args = Args::from_env(usage);
    args.dispatch(configs_json, "transformers", |st| {
        let (quick, threads, torch) = (st.quick, st.threads, st.reference.as_ref());
        println!("dart-bench generate: {}, nproc {}, {threads} threads{}", st.cpu, st.nproc, if quick { " (quick)" } else { "" });
        let only = args.opt("--only");
        let models: Vec<Value> = gen_configs(quick)
            .iter()
            .filter(|gc| only.as_deref().is_none_or(|o| o == gc.name))
            .map(|gc| bench_model(gc, threads, torch, quick))
            .collect();
        let b16: Vec<f64> = models.iter().filter_map(|m| m["ratio_vs_transformers"]["16"].as_f64()).collect();
        let worst_b16 = b16.iter().cloned().fold(f64::NAN, f64::min);
        let result = st.result(
            "dart-rl generate (cpu)",
            json!({
                "transformers_loadavg_before": torch.and_then(|t| t.get("loadavg_before")).cloned(),
                "transformers_loadavg_after": torch.and_then(|t| t.get("loadavg_after")).cloned(),
            }),
            json!({
                "setup": {
                    "weights": "random (Engine::random seed 1234)",
                    "adapters": [
                        {"slot": 0, "rank": DART_RANK, "alpha": ALPHA_PER_RANK * DART_RANK as f64, "targets": TARGETS, "b_init_std": B_INIT_STD},
                        {"slot": 1, "rank": DART_RANK, "alpha": ALPHA_PER_RANK * DART_RANK as f64, "targets": TARGETS, "b_init_std": B_INIT_STD},
                    ],
                    "plan": {"single_agent_routes_P_R_A_O": PLAN_ROUTES, "note": "prompt rows are encoded through slot 1, every decoded token (role R: the tags are never written) through slot 0"},
                    "role_rules": "open = [vocab-1, vocab-2], close = [vocab-3, vocab-4]; prompts use ids < vocab-4; no eos, no stop sequences; every sequence runs to max_new_tokens (asserted)",
                    "sampling": "greedy (temperature 0); logprob of the chosen token recorded as always",
                    "decode_measure": "per batch: fresh session, add `batch` prompts, generate(max_new_tokens=1) (prompt encode, not counted), then generate(max_new_tokens=N) timed: tokens_per_s = batch*N / time; median over reps",
                    "long_decode_measure": "the same at batch 16 after 1000-token prompts (crossing 1024 positions, so one KV cache growth is included)",
                    "prefill_measure": "fresh session, 16 prompts x 128 tokens, time of generate(max_new_tokens=1)",
                },
                "models": models,
                "ratio_vs_transformers_b16_worst": if b16.is_empty() { Value::Null } else { Value::from(round(worst_b16, 3)) },
                "target_ratio_b16": TARGET_RATIO_B16,
                "target_ratio_b16_ok": if b16.is_empty() { Value::Null } else { Value::from(worst_b16 >= TARGET_RATIO_B16) },
                "ratio_definition": "ours / transformers decode tokens per second at the same batch, prompt length, max_new_tokens (greedy, both run to the budget), measured in the same `pnpm bench` run",
                "transformers": torch.map(|t| json!({
                    "torch_version": t.get("torch_version"), "transformers_version": t.get("transformers_version"),
                    "peft_version": t.get("peft_version"), "threads": t.get("threads"), "attn_implementation": t.get("attn_implementation"),
                    "lora": t.get("lora"), "note": t.get("note"),
                })),
                "transformers_null_reason": st.reference_null_reason,
            }),
        );
        write_result(&st.out, &result);
        println!(
            "ratio_vs_transformers at batch 16 (worst over models): {} (target >= {TARGET_RATIO_B16}); wrote {} in {:.0}s",
            if b16.is_empty() { "n/a".to_string() } else { format!("{worst_b16:.2}") },
            st.out,
            st.elapsed_s()
        );
    });
}
