//! dart-bench engine_wgpu: the wgpu benchmark of the dart-core engine (issue 3,
//! item 5 "Benchmark") -> bench/results/engine-wgpu.json.
//!
//! `engine_wgpu configs [--quick]` prints the GEMM shapes and model configs as
//! JSON (scripts/bench/torch_gpu_ref.py reads them, so torch times the same
//! shapes on the same card).
//! `engine_wgpu run --out FILE [--threads N] [--quick] [--torch-json FILE | --torch-null REASON]`
//! times, in one run:
//!   - GEMM GFLOPS through the wgpu backend (`GpuOps::matmul`, the kernel the
//!     engine uses) at the transformer shapes of engine-cpu.json and at
//!     4096x4096x4096, next to the cpu GEMM (`ops::matmul::matmul`) at the same
//!     shapes, each checked against the cpu result;
//!   - forward + backward + AdamW step tokens/s of the wgpu Engine and of the
//!     cpu Engine for the model configs of engine-cpu.json (DART: two rank-8
//!     slots routed in spans, all 7 targets; same batch, tokens and routes);
//!   - with --torch-json (a CUDA machine): torch fp32 matmul GFLOPS (TF32 off)
//!     and transformers+peft forward+backward+step, as ratios.
//!
//! On an adapter of type Cpu (Mesa lavapipe) the 4096^3 GEMM and the
//! SmolLM2-135M-shape model would take minutes: they run only on a real GPU or
//! with DART_BENCH_FULL=1, else they are recorded as skipped with the reason.
//! DART_WGPU_ADAPTER pins the adapter (substring of its name).
use dart_bench::common::{
    Args,
    git_info, median, model_shapes, os, round, sh, train_config_json, transformer_gemm_shapes,
    utc_now, write_result, Rng, TrainBatch, ALPHA_PER_RANK, DART_RANK, SPAN_MAX, SPAN_MIN, TARGETS,
};
use dart_core::backend::wgpu::{GpuContext, GpuOps, GpuTensor, GEMM_TILE};
use dart_core::ops::matmul::matmul;
use dart_core::{AdapterSpec, BackendKind, Engine, EngineOptions, ModelConfig};
use serde_json::{json, Value};
use std::time::Instant;
/// Issue 3 target: our wgpu GEMM / torch fp32 GEMM at 4096^3 on the same card.
const GEMM_4096_TARGET: f64 = 0.5;
/// On a Cpu-type adapter, stop timing a model after this many seconds (at least `MIN_REPS_SLOW` reps).
const SLOW_ADAPTER_MODEL_BUDGET_S: f64 = 20.0;
const MIN_REPS_SLOW: usize = 3;

const GPU_HOWTO: &str = "On a machine with a GPU (and the NVIDIA/AMD Vulkan driver; wgpu must list the card, \
check with `cargo run --release -p dart-bench --bin wgpu`), run `pnpm bench` (or DART_BENCH_NO_GENERATE=1 pnpm bench; \
DART_WGPU_ADAPTER=<substring of the card's name> pins it). The adapter is then a real GPU, so the 4096^3 GEMM and the \
SmolLM2-135M-shape model run. When scripts/.venv-ref (scripts/requirements-ref.txt, torch with CUDA) or DART_BENCH_PYTHON \
has torch.cuda.is_available(), run.sh also runs scripts/bench/torch_gpu_ref.py in the same run: torch fp32 matmul \
(torch.backends.cuda.matmul.allow_tf32 = False) at the same GEMM shapes incl. 4096^3, and transformers+peft (one rank-16 \
LoRA on all 7 projections) forward+backward+AdamW step of the same model configs on cuda; the file then records \
gemm[].ratio_vs_torch_fp32, gemm_4096_ratio_vs_torch (target >= 0.5) and models[].ratio_vs_torch_peft. Commit the \
result with the device named (machine.gpu / adapter.name).";

// ---- configs ------------------------------------------------------------------

struct BenchConfig {
    name: &'static str,
    hf: Value,
    seqs: usize,
    seq_len: usize,
    warmup: usize,
    reps: usize,
    /// Too slow on a CPU rasterizer: run only on a real GPU or with DART_BENCH_FULL=1.
    gpu_only: bool,
}

/// The model configs of engine-cpu.json (crates/dart-bench/src/main.rs), same batches.
fn bench_configs(quick: bool) -> Vec<BenchConfig> {
    let r = |n: usize| if quick { 1 } else { n };
    let [qwen, smol] = model_shapes();
    vec![
        BenchConfig { name: qwen.name, hf: qwen.hf, seqs: 4, seq_len: 128, warmup: 1, reps: r(30), gpu_only: false },
        BenchConfig { name: smol.name, hf: smol.hf, seqs: 2, seq_len: 128, warmup: 1, reps: r(15), gpu_only: true },
    ]
}

struct GemmCase {
    name: String,
    m: usize,
    n: usize,
    k: usize,
    /// B stored [n,k] (y = x W^T) when true.
    tb: bool,
    gpu_only: bool,
}

/// The gemm section of engine-cpu.json, plus 4096^3.
fn gemm_cases() -> Vec<GemmCase> {
    let mut v: Vec<GemmCase> =
        transformer_gemm_shapes().into_iter().map(|s| GemmCase { name: s.name, m: s.m, n: s.n, k: s.k, tb: s.tb, gpu_only: false }).collect();
    v.push(GemmCase { name: "square 4096 x 4096 x 4096".into(), m: 4096, n: 4096, k: 4096, tb: false, gpu_only: true });
    v
}

fn configs_json(quick: bool) -> Value {
    let gemm: Vec<Value> = gemm_cases()
        .iter()
        .map(|c| json!({"name": c.name, "m": c.m, "n": c.n, "k": c.k, "b_transposed": c.tb}))
        .collect();
    let models: Vec<Value> = bench_configs(quick)
        .iter()
        .map(|c| train_config_json(c.name, &c.hf, c.seqs, c.seq_len, c.warmup, c.reps))
        .collect();
    json!({ "gemm": gemm, "configs": models, "lr": 1e-4, "quick": quick })
}

// ---- helpers ----------------------------------------------------------------------

/// NVIDIA card names, when nvidia-smi is there (the device a GPU run used).
fn nvidia_smi() -> Option<String> {
    sh("nvidia-smi", &["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]).filter(|s| !s.is_empty())
}

// ---- GEMM ---------------------------------------------------------------------

fn rand_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(0x9E3779B97F4A7C15 ^ seed);
    (0..len).map(|_| (rng.below(2001) as f32 - 1000.0) * 1e-3).collect()
}

/// Times `f` (one call = one GEMM) until `min_reps` and `min_time` are reached.
fn time_calls(min_reps: usize, min_time: f64, max_reps: usize, mut f: impl FnMut() -> f64) -> Vec<f64> {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || (start.elapsed().as_secs_f64() < min_time && times.len() < max_reps) {
        times.push(f());
    }
    times
}

#[allow(clippy::too_many_arguments)]
fn bench_gemm(ops: &GpuOps, pool: &rayon::ThreadPool, c: &GemmCase, quick: bool, slow_adapter: bool, full: bool, seen_gflops: f64, compiled: bool, torch: Option<&Value>) -> Value {
    let flops = 2.0 * (c.m * c.n * c.k) as f64;
    let base = json!({"name": c.name, "m": c.m, "n": c.n, "k": c.k, "b_transposed": c.tb});
    let torch_row = torch
        .and_then(|t| t.get("gemm"))
        .and_then(|g| g.as_array())
        .and_then(|rows| rows.iter().find(|r| r["m"] == c.m && r["n"] == c.n && r["k"] == c.k && r["b_transposed"] == c.tb))
        .cloned();
    if c.gpu_only && slow_adapter && !full {
        let reason = format!(
            "skipped: the adapter is a CPU rasterizer (type Cpu); at the {seen_gflops:.1} GFLOPS it reached on the shapes above, one {}x{}x{} GEMM ({:.0} GFLOP) takes ~{:.0}s (plus warm-up and check); runs on a real GPU or with DART_BENCH_FULL=1",
            c.m, c.n, c.k, flops / 1e9, flops / 1e9 / seen_gflops
        );
        println!("  gemm {:<48} {reason}", c.name);
        let mut v = base;
        v["skipped"] = json!(reason);
        v["torch_fp32"] = torch_row.unwrap_or(Value::Null);
        return v;
    }
    let seed = (c.m * 31 + c.n * 7 + c.k) as u64;
    let a = rand_vec(c.m * c.k, seed);
    let b = rand_vec(c.k * c.n, seed ^ 0xABCD);
    // cpu, same shape and layout
    let mut out = vec![0f32; c.m * c.n];
    let cpu_call = |out: &mut Vec<f32>| {
        let t = Instant::now();
        pool.install(|| matmul::<f32>(out, &a, &b, c.m, c.n, c.k, false, c.tb, false));
        t.elapsed().as_secs_f64()
    };
    cpu_call(&mut out);
    let (cpu_min_reps, cpu_min_time) = if quick { (2, 0.05) } else { (3, 0.25) };
    let cpu_times = time_calls(cpu_min_reps, cpu_min_time, 200, || cpu_call(&mut out));
    let cpu_gflops = flops / median(&cpu_times) / 1e9;
    // wgpu: the first call compiles the pipeline and is checked against the cpu result
    let (ga, gb, gc) = (ops.ctx.upload(&a), ops.ctx.upload(&b), ops.ctx.alloc(c.m * c.n));
    let sentinel: GpuTensor = ops.ctx.alloc(1);
    let t = Instant::now();
    ops.matmul(&gc, &ga, &gb, c.m, c.n, c.k, false, c.tb, false);
    let got = ops.ctx.download(&gc);
    let first_s = t.elapsed().as_secs_f64();
    let max_diff = got.iter().zip(&out).map(|(x, y)| ((x - y).abs() / y.abs().max(1.0)) as f64).fold(0.0, f64::max);
    drop(got);
    // Timed: `iters` dispatches in one batch, then a 1-element copy read back
    // (in queue order, so it waits for them without reading C back).
    let batch = |iters: usize| {
        let t = Instant::now();
        for _ in 0..iters {
            ops.matmul(&gc, &ga, &gb, c.m, c.n, c.k, false, c.tb, false);
        }
        ops.ctx.copy(&sentinel, &gc, 1);
        let _ = ops.ctx.download(&sentinel);
        t.elapsed().as_secs_f64() / iters as f64
    };
    // On a CPU rasterizer a call past a few seconds (the lm-head shapes) is
    // timed once: its first call, the pipeline being compiled by an earlier
    // shape with the same layout (that time includes reading C back).
    let single = slow_adapter && compiled && first_s > 3.0;
    let (times, reps, iters, med) = if single {
        (vec![first_s], 0, 1, first_s)
    } else {
        let target = if quick { 0.05 } else if slow_adapter { 0.3 } else { 0.2 };
        let est = batch(1);
        let iters = ((target / est).ceil() as usize).clamp(1, 512);
        let reps = if quick || est > 2.0 { 1 } else { 3 };
        let mut times = vec![est];
        for _ in 0..reps {
            times.push(batch(iters));
        }
        let med = median(&times[1..]);
        (times, reps, iters, med)
    };
    let gflops = flops / med / 1e9;
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let ratio = gflops / cpu_gflops;
    println!(
        "  gemm {:<48} {:>5}x{:>5}x{:>5}  wgpu {:>8.1} GFLOPS (best {:.1}, {})  cpu {:>7.1}  wgpu/cpu {:.3}  diff {:.1e}",
        c.name, c.m, c.n, c.k, gflops, flops / best / 1e9,
        if single { "1 call".to_string() } else { format!("{reps}x{iters} calls") },
        cpu_gflops, ratio, max_diff
    );
    let mut v = base;
    v["wgpu_gflops"] = json!(round(gflops, 2));
    v["wgpu_best_gflops"] = json!(round(flops / best / 1e9, 2));
    v["wgpu_median_s"] = json!(med);
    v["wgpu_timing"] = if single {
        json!({"batches": 0, "calls_per_batch": 1, "timed": "the first call only (incl. reading C back; pipeline compiled by an earlier shape): a call takes seconds on this Cpu-type adapter", "first_call_s": first_s})
    } else {
        json!({"batches": reps, "calls_per_batch": iters, "first_call_s_incl_compile_and_readback": first_s})
    };
    v["cpu_gflops"] = json!(round(cpu_gflops, 2));
    v["cpu_reps"] = json!(cpu_times.len());
    v["ratio_wgpu_vs_cpu"] = json!(round(ratio, 4));
    v["max_scaled_diff_vs_cpu"] = json!(max_diff);
    match torch_row {
        Some(tr) => {
            let tg = tr["gflops"].as_f64().unwrap_or(f64::NAN);
            v["torch_fp32_gflops"] = json!(round(tg, 2));
            v["ratio_vs_torch_fp32"] = json!(round(gflops / tg, 4));
            println!("       torch fp32 (TF32 off) {tg:.1} GFLOPS => ours / torch {:.3}", gflops / tg);
        }
        None => {
            v["torch_fp32_gflops"] = Value::Null;
            v["ratio_vs_torch_fp32"] = Value::Null;
        }
    }
    v
}

// ---- forward + backward + step --------------------------------------------------

struct Case {
    engine: Engine<f32>,
    batch: TrainBatch,
    times: Vec<[f64; 3]>,
}

impl Case {
    /// The DART setup of engine-cpu.json: two rank-8 slots, routed in spans.
    fn new(cfg: &ModelConfig, bc: &BenchConfig, backend: BackendKind, threads: usize) -> Result<Case, String> {
        let opts = EngineOptions { threads, seed: 0, backend };
        let mut engine = Engine::<f32>::random(cfg.clone(), 1234, &opts).map_err(|e| format!("{e}"))?;
        for i in 0..2 {
            let spec = AdapterSpec::new(DART_RANK, ALPHA_PER_RANK * DART_RANK as f64, &TARGETS, 100 + i as u64).map_err(|e| format!("{e}"))?;
            engine.add_adapter(spec).map_err(|e| format!("{e}"))?;
        }
        let batch = TrainBatch::new(cfg.vocab_size, bc.seqs, bc.seq_len, true);
        Ok(Case { engine, batch, times: Vec::new() })
    }

    fn iter(&mut self) -> [f64; 3] {
        self.batch.iter(&mut self.engine)
    }

    fn summary(&self, n_tokens: usize) -> Value {
        let col = |i: usize| -> Vec<f64> { self.times.iter().map(|t| t[i]).collect() };
        let total: Vec<f64> = self.times.iter().map(|t| t[0] + t[1] + t[2]).collect();
        let fb: Vec<f64> = self.times.iter().map(|t| t[0] + t[1]).collect();
        let mt = median(&total);
        json!({
            "reps": self.times.len(),
            "median_s": {"forward": median(&col(0)), "backward": median(&col(1)), "step": median(&col(2)), "forward_backward": median(&fb), "total": mt},
            "all_total_s": total,
            "tokens_per_s": round(n_tokens as f64 / mt, 1),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_model(bc: &BenchConfig, threads: usize, slow_adapter: bool, full: bool, quick: bool, seen_gflops: f64, torch: Option<&Value>) -> Value {
    let n = bc.seqs * bc.seq_len;
    let base = json!({
        "name": bc.name, "hf_config": bc.hf,
        "batch": {"seqs": bc.seqs, "seq_len": bc.seq_len, "tokens": n},
        "adapters": {"slots": 2, "rank": DART_RANK, "alpha": ALPHA_PER_RANK * DART_RANK as f64, "targets": TARGETS,
                     "routing": format!("slots alternate in spans of {SPAN_MIN}..={SPAN_MAX} tokens (as engine-cpu.json's dart setup)")},
    });
    let torch_row = torch.and_then(|t| t.get("configs")).and_then(|c| c.get(bc.name)).cloned();
    if bc.gpu_only && slow_adapter && !full {
        let reason = format!(
            "skipped: the adapter is a CPU rasterizer (type Cpu); at the {seen_gflops:.1} GFLOPS its GEMM reached here, one forward+backward \
             of this {n}-token batch (~{:.0} GFLOP of GEMM) takes ~{:.0}s per rep, past this run's budget; runs on a real GPU or with DART_BENCH_FULL=1",
            approx_train_gflop(bc, n),
            approx_train_gflop(bc, n) / seen_gflops
        );
        println!("model {}: {reason}", bc.name);
        let mut v = base;
        v["skipped"] = json!(reason);
        v["torch_peft"] = torch_row.unwrap_or(Value::Null);
        return v;
    }
    let cfg = ModelConfig::from_json(&bc.hf.to_string()).expect("bench config is valid");
    println!("model {} ({} seqs x {} tokens = {n} tokens)", bc.name, bc.seqs, bc.seq_len);
    let t = Instant::now();
    let mut gpu = match Case::new(&cfg, bc, BackendKind::Wgpu, threads) {
        Ok(c) => c,
        Err(e) => {
            let mut v = base;
            v["error"] = json!(format!("wgpu engine: {e}"));
            return v;
        }
    };
    let mut cpu = Case::new(&cfg, bc, BackendKind::Cpu, threads).expect("cpu engine");
    let info = gpu.engine.backend_info();
    println!("  built wgpu ({}) and cpu engines in {:.1}s", info.adapter, t.elapsed().as_secs_f64());
    for _ in 0..bc.warmup {
        let a = gpu.iter();
        let b = cpu.iter();
        println!("  warm-up: wgpu {:.3}s  cpu {:.3}s", a.iter().sum::<f64>(), b.iter().sum::<f64>());
    }
    // Interleaved (ABBA); on a slow adapter stop after the time budget.
    let start = Instant::now();
    for rep in 0..bc.reps {
        let (a, b) = if rep % 2 == 0 {
            let a = gpu.iter();
            (a, cpu.iter())
        } else {
            let b = cpu.iter();
            (gpu.iter(), b)
        };
        gpu.times.push(a);
        cpu.times.push(b);
        println!("  rep {rep}: wgpu {:.3}s | cpu {:.3}s", a.iter().sum::<f64>(), b.iter().sum::<f64>());
        if slow_adapter && !quick && rep + 1 >= MIN_REPS_SLOW && start.elapsed().as_secs_f64() > SLOW_ADAPTER_MODEL_BUDGET_S {
            println!("  (stopping after {} reps: {SLOW_ADAPTER_MODEL_BUDGET_S}s budget on a Cpu-type adapter)", rep + 1);
            break;
        }
    }
    let gs = gpu.summary(n);
    let cs = cpu.summary(n);
    let (gt, ct) = (gs["tokens_per_s"].as_f64().unwrap(), cs["tokens_per_s"].as_f64().unwrap());
    let paired: Vec<f64> = gpu.times.iter().zip(&cpu.times).map(|(a, b)| b.iter().sum::<f64>() / a.iter().sum::<f64>()).collect();
    println!("  => wgpu {gt:.0} tok/s, cpu {ct:.0} tok/s, wgpu/cpu {:.3}", gt / ct);
    let mut v = base;
    v["wgpu"] = json!({"adapter": info.adapter, "device_type": info.device_type, "timing": gs});
    v["cpu"] = json!({"threads": threads, "timing": cs});
    v["wgpu_tokens_per_s"] = json!(gt);
    v["cpu_tokens_per_s"] = json!(ct);
    v["ratio_wgpu_vs_cpu"] = json!(round(gt / ct, 4));
    v["ratio_wgpu_vs_cpu_paired"] = json!(paired.iter().map(|r| round(*r, 4)).collect::<Vec<_>>());
    match torch_row {
        Some(tr) => {
            let tt = tr["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
            println!("  torch+peft rank16 on cuda: {tt:.0} tok/s => ours (wgpu, dart) / torch {:.3}", gt / tt);
            v["torch_peft_tokens_per_s"] = json!(tt);
            v["ratio_vs_torch_peft"] = json!(round(gt / tt, 4));
            v["torch_peft"] = tr;
        }
        None => {
            v["torch_peft_tokens_per_s"] = Value::Null;
            v["ratio_vs_torch_peft"] = Value::Null;
        }
    }
    v
}

/// Rough GFLOP of one forward + backward (dx only for the frozen base): 3 x 2 x params x tokens.
fn approx_train_gflop(bc: &BenchConfig, n: usize) -> f64 {
    let g = |k: &str| bc.hf[k].as_u64().unwrap_or(0) as f64;
    let (d, f, l, v) = (g("hidden_size"), g("intermediate_size"), g("num_hidden_layers"), g("vocab_size"));
    let hd = d / g("num_attention_heads");
    let kv = g("num_key_value_heads") * hd;
    let per_layer = d * d * 2.0 + d * kv * 2.0 + 3.0 * d * f;
    let params = l * per_layer + v * d;
    2.0 * 2.0 * params * n as f64 / 1e9 // forward + dx of backward
}

// ---- main -------------------------------------------------------------------

fn usage() -> ! {
    eprintln!("usage: engine_wgpu configs [--quick]\n       engine_wgpu run --out FILE [--threads N] [--quick] [--torch-json FILE | --torch-null REASON] [--skip-gemm] [--only MODEL]");
    std::process::exit(2)
}

fn main() {
    let args = Args::from_env(usage);
    args.dispatch(configs_json, "torch GPU", |st| {
        let (quick, threads, torch) = (st.quick, st.threads, st.reference.as_ref());
        let (cpu, nproc, out) = (&st.cpu, st.nproc, &st.out);
        let full = std::env::var("DART_BENCH_FULL").is_ok_and(|v| v == "1");
        let ctx = match GpuContext::new(None, false) {
            Ok(c) => c,
            Err(e) => {
                // Recorded, not fatal: `pnpm bench` goes on without a wgpu adapter.
                eprintln!("engine_wgpu: no wgpu adapter: {e}");
                let result = json!({
                    "schema": 1, "benchmark": "dart-rl engine-wgpu", "date": utc_now(), "quick": quick,
                    "machine": {"cpu_model": cpu, "nproc": nproc, "threads_used": threads, "os": os(), "gpu": nvidia_smi(), "loadavg_before": st.load_before},
                    "git": git_info(),
                    "adapter": Value::Null, "adapter_error": format!("{e}"),
                    "gemm": [], "models": [],
                    "torch_null_reason": st.reference_null_reason,
                    "gpu_run": Value::Null, "gpu_run_null_reason": format!("no wgpu adapter could be opened: {e}"),
                    "gpu_run_howto": GPU_HOWTO,
                });
                write_result(&out, &result);
                println!("wrote {out} (no adapter)");
                return;
            }
        };
        let adapter = ctx.adapter.clone();
        let slow_adapter = !adapter.is_gpu;
        println!(
            "engine_wgpu: {cpu}, nproc {nproc}, {threads} threads; adapter {} ({}, {}) driver {}{}{}",
            adapter.name, adapter.device_type, adapter.backend, adapter.driver,
            if full { "; DART_BENCH_FULL=1" } else { "" },
            if quick { " (quick)" } else { "" }
        );
        if slow_adapter {
            println!("  the adapter is not a GPU (type {}): numbers for the record only", adapter.device_type);
        }
        let ops = GpuOps::new(ctx);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
        let gemm: Vec<Value> = if args.flag("--skip-gemm") {
            Vec::new()
        } else {
            println!("GEMM: wgpu (GpuOps::matmul, {GEMM_TILE}x{GEMM_TILE} tiles) vs cpu (ops::matmul::matmul::<f32>, {threads} threads)");
            let mut rows: Vec<Value> = Vec::new();
            for c in gemm_cases() {
                let seen = rows.iter().filter_map(|r| r["wgpu_gflops"].as_f64()).fold(f64::NAN, f64::max);
                let compiled = rows.iter().any(|r| r["b_transposed"] == c.tb && r["wgpu_gflops"].is_number());
                rows.push(bench_gemm(&ops, &pool, &c, quick, slow_adapter, full, seen, compiled, torch));
            }
            rows
        };
        let seen_gflops = gemm.iter().filter_map(|r| r["wgpu_gflops"].as_f64()).fold(f64::NAN, f64::max);
        drop(pool);
        drop(ops);
        let only = args.opt("--only");
        let models: Vec<Value> = bench_configs(quick)
            .iter()
            .filter(|bc| only.as_deref().is_none_or(|o| o == bc.name))
            .map(|bc| bench_model(bc, threads, slow_adapter, full, quick, seen_gflops, torch))
            .collect();
        let g4096 = gemm.iter().find(|g| g["m"] == 4096 && g["n"] == 4096 && g["k"] == 4096);
        let r4096 = g4096.and_then(|g| g["ratio_vs_torch_fp32"].as_f64());
        let gpu_run = if adapter.is_gpu {
            json!({
                "device": nvidia_smi().unwrap_or_else(|| adapter.name.clone()),
                "adapter": adapter.name,
                "gemm_4096_wgpu_gflops": g4096.and_then(|g| g.get("wgpu_gflops")).cloned(),
                "gemm_4096_torch_fp32_gflops": g4096.and_then(|g| g.get("torch_fp32_gflops")).cloned(),
                "gemm_4096_ratio_vs_torch": r4096,
                "torch_reference": torch.is_some(),
            })
        } else {
            Value::Null
        };
        let gpu_run_null_reason = (!adapter.is_gpu).then(|| {
            std::env::var("DART_BENCH_GPU_NULL_REASON").unwrap_or_else(|_| {
                format!(
                    "no GPU machine was lent to this task: the only wgpu adapter here is {} (type {}, a CPU Vulkan driver)",
                    adapter.name, adapter.device_type
                )
            })
        });
        let result = st.result(
            "dart-rl engine-wgpu",
            json!({"gpu": nvidia_smi()}),
            json!({
            "full": full,
            "adapter": {
                "name": adapter.name,
                "type": adapter.device_type,
                "backend": adapter.backend,
                "driver": adapter.driver,
                "is_gpu": adapter.is_gpu,
                "pinned_by": std::env::var("DART_WGPU_ADAPTER").ok(),
                "note": if adapter.is_gpu { "a real GPU" } else { "a CPU rasterizer (e.g. Mesa lavapipe): numbers for the record only, not GPU performance" },
            },
            "dtype": "f32",
            "gemm": gemm,
            "gemm_definition": "GFLOPS = 2mnk / median seconds per call; wgpu: batches of calls recorded back to back, then a 1-element copy read back (the wait, without reading C); the first call (pipeline compile + full read-back) is not timed and is checked against the cpu result; cpu: ops::matmul::matmul::<f32> on the same data and layout (B [n,k] when b_transposed), same run",
            "models": models,
            "models_definition": "tokens/s = batch tokens / median seconds of forward + backward + AdamW step (DART: two rank-8 slots routed in spans, all 7 targets), wgpu Engine and cpu Engine interleaved in the same run; on wgpu backward only records work (no read-back), so the split between backward and step is not meaningful, the total is",
            "gemm_4096_ratio_vs_torch": r4096,
            "gemm_4096_ratio_target": GEMM_4096_TARGET,
            "torch": torch.map(|t| json!({
                "torch_version": t.get("torch_version"), "transformers_version": t.get("transformers_version"),
                "peft_version": t.get("peft_version"), "cuda_device": t.get("cuda_device"),
                "allow_tf32": t.get("allow_tf32"), "attn_implementation": t.get("attn_implementation"), "note": t.get("note"),
            })),
            "torch_null_reason": st.reference_null_reason,
            "gpu_run": gpu_run,
            "gpu_run_null_reason": gpu_run_null_reason,
            "gpu_run_howto": GPU_HOWTO,
            }),
        );
        write_result(out, &result);
        println!("wrote {out} in {:.0}s", st.elapsed_s());
    });
}
