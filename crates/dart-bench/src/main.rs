//! dart-bench: the CPU benchmark of the dart-core engine.
//!
//! `dart-bench configs` prints the benchmark configurations as JSON (the
//! torch reference script reads them, so both sides time the same shapes).
//! `dart-bench run --out FILE [--torch-json FILE | --torch-null REASON]`
//! times GEMMs and forward+backward+step, prints progress lines and writes
//! the result JSON (see scripts/bench/run.sh).
mod ops_breakdown;

use dart_core::ops::matmul::matmul;
use dart_core::{AdamW, AdapterSpec, Engine, EngineOptions, ModelConfig, StepOptions};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
/// The routing overhead the issue asks for: dart / rank-16 time.
const ROUTING_TARGET: f64 = 1.10;

/// One model benchmark: an HF config, a batch and the repetition counts.
struct BenchConfig {
    name: &'static str,
    hf: Value,
    seqs: usize,
    seq_len: usize,
    warmup: usize,
    reps: usize,
}

fn bench_configs(quick: bool) -> Vec<BenchConfig> {
    let reps_override: Option<usize> = std::env::var("DART_BENCH_REPS").ok().and_then(|r| r.parse().ok());
    let r = |n: usize| reps_override.unwrap_or(if quick { 1 } else { n });
    vec![
        BenchConfig {
            name: "qwen2-4L-d256",
            hf: json!({
                "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                "vocab_size": 8192, "hidden_size": 256, "intermediate_size": 1024,
                "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
                "max_position_embeddings": 2048, "hidden_act": "silu"
            }),
            seqs: 4,
            seq_len: 128,
            warmup: 1,
            reps: r(30),
        },
        BenchConfig {
            name: "smollm2-135m-shape",
            hf: json!({
                "model_type": "llama", "architectures": ["LlamaForCausalLM"],
                "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true,
                "attention_bias": false, "max_position_embeddings": 8192, "hidden_act": "silu"
            }),
            seqs: 2,
            seq_len: 128,
            warmup: 1,
            reps: r(15),
        },
    ]
}

/// The adapter setups compared: DART (two rank-8 slots, routed in spans)
/// and the reference (one rank-16 slot on every token): same LoRA FLOPs.
const DART_RANK: usize = 8;
const REF_RANK: usize = 16;
const ALPHA_PER_RANK: f64 = 2.0;
const SPAN_MIN: usize = 8;
const SPAN_MAX: usize = 48;

fn configs_json(quick: bool) -> Value {
    let cfgs: Vec<Value> = bench_configs(quick)
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "hf_config": c.hf, "seqs": c.seqs, "seq_len": c.seq_len,
                "warmup": c.warmup, "reps": c.reps,
                "reference_adapter": {"rank": REF_RANK, "alpha": ALPHA_PER_RANK * REF_RANK as f64, "targets": TARGETS},
            })
        })
        .collect();
    json!({ "configs": cfgs, "lr": 1e-4 })
}

// ---- small helpers ----------------------------------------------------------

/// Deterministic xorshift generator (tokens and span lengths only).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_flags() -> Vec<String> {
    let want = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"];
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("flags")).map(|l| l.to_string()))
        .unwrap_or_default();
    let have: Vec<&str> = flags.split_whitespace().collect();
    want.iter().filter(|w| have.contains(w)).map(|w| w.to_string()).collect()
}

/// UTC date-time from the system clock, ISO 8601.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

fn git_info() -> Value {
    let commit = sh("git", &["rev-parse", "HEAD"]);
    // Not through sh(): its trim would eat the status column of the first line.
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let dirty_files: Vec<String> = status
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(|l| l.get(3..).unwrap_or(l).to_string())
        .filter(|l| !l.is_empty())
        .collect();
    json!({
        "commit": commit,
        "dirty": status.as_ref().map(|_| !dirty_files.is_empty()),
        "dirty_files": dirty_files,
    })
}

// ---- GEMM -------------------------------------------------------------------

struct GemmCase {
    name: String,
    m: usize,
    n: usize,
    k: usize,
    /// B stored [n,k] (the linear-forward layout y = x W^T) when true.
    tb: bool,
}

fn gemm_cases() -> Vec<GemmCase> {
    let mut v = Vec::new();
    for (d, f, t) in [(256usize, 1024usize, 512usize), (576, 1536, 256)] {
        v.push(GemmCase { name: format!("d{d} qo: tokens x hidden x hidden"), m: t, n: d, k: d, tb: true });
        v.push(GemmCase { name: format!("d{d} gate/up: tokens x 4h x hidden"), m: t, n: f, k: d, tb: true });
        v.push(GemmCase { name: format!("d{d} down: tokens x hidden x 4h"), m: t, n: d, k: f, tb: true });
        v.push(GemmCase { name: format!("d{d} down dx (backward): tokens x 4h x hidden"), m: t, n: f, k: d, tb: false });
    }
    v.push(GemmCase { name: "lm head 512 x 49152 x 576".into(), m: 512, n: 49152, k: 576, tb: true });
    v.push(GemmCase { name: "lm head dx (backward) 512 x 576 x 49152".into(), m: 512, n: 576, k: 49152, tb: false });
    v
}

fn bench_gemm(pool: &rayon::ThreadPool, c: &GemmCase, quick: bool) -> Value {
    let mut rng = Rng(0x9E3779B97F4A7C15 ^ (c.m * 31 + c.n * 7 + c.k) as u64);
    let mut rv = |len: usize| -> Vec<f32> { (0..len).map(|_| (rng.below(2001) as f32 - 1000.0) * 1e-3).collect() };
    let a = rv(c.m * c.k);
    let b = rv(c.k * c.n);
    let mut out = vec![0f32; c.m * c.n];
    let flops = 2.0 * (c.m * c.n * c.k) as f64;
    let run = |out: &mut Vec<f32>| {
        let t = Instant::now();
        pool.install(|| matmul::<f32>(out, &a, &b, c.m, c.n, c.k, false, c.tb, false));
        t.elapsed().as_secs_f64()
    };
    run(&mut out); // warm-up (page faults, packing buffers)
    let (min_reps, min_time) = if quick { (2, 0.05) } else { (3, 0.4) };
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || (start.elapsed().as_secs_f64() < min_time && times.len() < 200) {
        times.push(run(&mut out));
    }
    let med = median(&times);
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let gflops = flops / med / 1e9;
    println!(
        "  gemm {:<48} {:>5}x{:>5}x{:>5}  {:>7.1} GFLOPS (median of {}, best {:.1})",
        c.name, c.m, c.n, c.k, gflops, times.len(), flops / best / 1e9
    );
    json!({
        "name": c.name, "m": c.m, "n": c.n, "k": c.k, "b_transposed": c.tb,
        "gflops": round(gflops, 2), "best_gflops": round(flops / best / 1e9, 2),
        "median_s": med, "reps": times.len(),
    })
}

// ---- forward + backward + step ---------------------------------------------

/// One engine with its adapter setup and a fixed batch.
struct Case {
    engine: Engine<f32>,
    tokens: Vec<i32>,
    seq_lens: Vec<i32>,
    routes: Vec<i32>,
    dlogp: Vec<f32>,
    step: StepOptions,
    times: Vec<[f64; 3]>,
}

impl Case {
    fn new(cfg: &ModelConfig, bc: &BenchConfig, dart: bool, threads: usize) -> Case {
        let opts = EngineOptions { threads, seed: 0, backend: dart_core::BackendKind::Cpu };
        let mut engine = Engine::<f32>::random(cfg.clone(), 1234, &opts).expect("random engine");
        let ranks: &[usize] = if dart { &[DART_RANK, DART_RANK] } else { &[REF_RANK] };
        for (i, &r) in ranks.iter().enumerate() {
            let spec = AdapterSpec::new(r, ALPHA_PER_RANK * r as f64, &TARGETS, 100 + i as u64).expect("adapter spec");
            engine.add_adapter(spec).expect("add adapter");
        }
        let mut rng = Rng(0xD1B54A32D192ED03);
        let n = bc.seqs * bc.seq_len;
        let tokens: Vec<i32> = (0..n).map(|_| rng.below(cfg.vocab_size) as i32).collect();
        let seq_lens = vec![bc.seq_len as i32; bc.seqs];
        // DART: slots alternate in spans of SPAN_MIN..=SPAN_MAX tokens, like
        // turns of a multi-agent trajectory; the reference puts every token on slot 0.
        let mut routes = Vec::with_capacity(n);
        let mut span_rng = Rng(0x2545F4914F6CDD1D);
        for s in 0..bc.seqs {
            let mut slot = (s % 2) as i32;
            let mut left = bc.seq_len;
            while left > 0 {
                let span = (SPAN_MIN + span_rng.below(SPAN_MAX - SPAN_MIN + 1)).min(left);
                routes.extend(std::iter::repeat(if dart { slot } else { 0 }).take(span));
                slot ^= 1;
                left -= span;
            }
        }
        // L = -mean logprob (a policy-gradient-shaped upstream gradient).
        let dlogp = vec![-1.0 / n as f32; n];
        let step = StepOptions { adamw: AdamW { lr: 1e-4, ..AdamW::default() }, slots: None };
        Case { engine, tokens, seq_lens, routes, dlogp, step, times: Vec::new() }
    }

    /// One forward + backward + AdamW step; returns the seconds of each phase.
    fn iter(&mut self) -> [f64; 3] {
        let t0 = Instant::now();
        let lp = self.engine.forward(&self.tokens, &self.seq_lens, &self.routes).expect("forward");
        let t1 = Instant::now();
        std::hint::black_box(&lp);
        self.engine.backward(&self.dlogp).expect("backward");
        let t2 = Instant::now();
        self.engine.step(&self.step).expect("step");
        let t3 = Instant::now();
        [(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()]
    }

    fn summary(&self, n_tokens: usize) -> Value {
        let col = |i: usize| -> Vec<f64> { self.times.iter().map(|t| t[i]).collect() };
        let total: Vec<f64> = self.times.iter().map(|t| t[0] + t[1] + t[2]).collect();
        let fb: Vec<f64> = self.times.iter().map(|t| t[0] + t[1]).collect();
        let (mt, mfb) = (median(&total), median(&fb));
        json!({
            "median_s": {
                "forward": median(&col(0)), "backward": median(&col(1)), "step": median(&col(2)),
                "forward_backward": mfb, "total": mt,
            },
            "all_total_s": total,
            "tokens_per_s": round(n_tokens as f64 / mt, 1),
            "fwd_bwd_tokens_per_s": round(n_tokens as f64 / mfb, 1),
        })
    }
}

fn bench_model(bc: &BenchConfig, threads: usize, torch: Option<&Value>) -> Value {
    let cfg = ModelConfig::from_json(&bc.hf.to_string()).expect("bench config is valid");
    let n = bc.seqs * bc.seq_len;
    println!("model {} ({} seqs x {} tokens = {n} tokens, {} warm-up + {} timed, interleaved)", bc.name, bc.seqs, bc.seq_len, bc.warmup, bc.reps);
    let t = Instant::now();
    let mut dart = Case::new(&cfg, bc, true, threads);
    let mut reference = Case::new(&cfg, bc, false, threads);
    let spans = dart.routes.windows(2).filter(|w| w[0] != w[1]).count() + bc.seqs;
    let per_slot: Vec<usize> = (0..2).map(|s| dart.routes.iter().filter(|&&r| r == s).count()).collect();
    println!("  built two engines in {:.1}s; dart routes: {spans} spans, tokens per slot {per_slot:?}", t.elapsed().as_secs_f64());
    for _ in 0..bc.warmup {
        let a = dart.iter();
        let b = reference.iter();
        println!("  warm-up: dart {:.3}s  rank16 {:.3}s", a.iter().sum::<f64>(), b.iter().sum::<f64>());
    }
    // ABBA order so neither setup always runs first.
    for rep in 0..bc.reps {
        let (a, b) = if rep % 2 == 0 {
            let a = dart.iter();
            (a, reference.iter())
        } else {
            let b = reference.iter();
            (dart.iter(), b)
        };
        dart.times.push(a);
        reference.times.push(b);
        println!(
            "  rep {rep}: dart fwd {:.3} bwd {:.3} step {:.3} = {:.3}s | rank16 fwd {:.3} bwd {:.3} step {:.3} = {:.3}s",
            a[0], a[1], a[2], a.iter().sum::<f64>(), b[0], b[1], b[2], b.iter().sum::<f64>()
        );
    }
    let breakdown = ops_breakdown::breakdown(&cfg, bc.seqs, bc.seq_len, threads, if bc.reps > 1 { 7 } else { 2 });
    let ds = dart.summary(n);
    let rs = reference.summary(n);
    let ratio = ds["median_s"]["total"].as_f64().unwrap() / rs["median_s"]["total"].as_f64().unwrap();
    // Per-rep ratios (paired, same rep) as a spread estimate.
    let paired: Vec<f64> = dart.times.iter().zip(&reference.times).map(|(a, b)| a.iter().sum::<f64>() / b.iter().sum::<f64>()).collect();
    let ours = ds["tokens_per_s"].as_f64().unwrap();
    println!(
        "  => dart {:.0} tok/s (fwd+bwd {:.0}), rank16 {:.0} tok/s; routing_overhead_ratio {:.3} (paired reps: {})",
        ours,
        ds["fwd_bwd_tokens_per_s"].as_f64().unwrap(),
        rs["tokens_per_s"].as_f64().unwrap(),
        ratio,
        paired.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" ")
    );
    let (torch_v, torch_tps, ratio_vs_torch, ratio_ref_vs_torch) = match torch.and_then(|t| t.get("configs")).and_then(|c| c.get(bc.name)) {
        Some(tc) => {
            let tps = tc["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
            let r = ours / tps;
            let rr = rs["tokens_per_s"].as_f64().unwrap() / tps;
            println!("  torch+peft rank16: {tps:.0} tok/s => ratio_vs_torch (dart / torch) {r:.3}, rank16 / torch {rr:.3}");
            (tc.clone(), Value::from(tps), Value::from(round(r, 3)), Value::from(round(rr, 3)))
        }
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "name": bc.name,
        "hf_config": bc.hf,
        "batch": {"seqs": bc.seqs, "seq_len": bc.seq_len, "tokens": n},
        "warmup": bc.warmup, "reps": bc.reps,
        "dart": {
            "adapters": [{"rank": DART_RANK, "alpha": ALPHA_PER_RANK * DART_RANK as f64}, {"rank": DART_RANK, "alpha": ALPHA_PER_RANK * DART_RANK as f64}],
            "targets": TARGETS,
            "routing": format!("slots alternate in spans of {SPAN_MIN}..={SPAN_MAX} tokens"),
            "spans": spans, "tokens_per_slot": per_slot,
            "timing": ds,
        },
        "rank16": {
            "adapters": [{"rank": REF_RANK, "alpha": ALPHA_PER_RANK * REF_RANK as f64}],
            "targets": TARGETS,
            "routing": "every token on slot 0",
            "timing": rs,
        },
        "tokens_per_s": ours,
        "routing_overhead_ratio": round(ratio, 4),
        "routing_overhead_ratio_paired_median": round(median(&paired), 4),
        "routing_overhead_ratio_best": round(
            dart.times.iter().map(|t| t.iter().sum::<f64>()).fold(f64::INFINITY, f64::min)
                / reference.times.iter().map(|t| t.iter().sum::<f64>()).fold(f64::INFINITY, f64::min),
            4,
        ),
        "routing_overhead_paired_ratios": paired.iter().map(|r| round(*r, 4)).collect::<Vec<_>>(),
        "torch_tokens_per_s": torch_tps,
        "ratio_vs_torch": ratio_vs_torch,
        "rank16_ratio_vs_torch": ratio_ref_vs_torch,
        "torch": torch_v,
        "op_breakdown": breakdown,
    })
}

// ---- main -------------------------------------------------------------------

fn usage() -> ! {
    eprintln!("usage: dart-bench configs [--quick]\n       dart-bench run --out FILE [--threads N] [--quick] [--torch-json FILE | --torch-null REASON] [--skip-gemm] [--only MODEL]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else { usage() };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let opt = |name: &str| args.iter().position(|a| a == name).map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()));
    let quick = flag("--quick");
    match cmd.as_str() {
        "configs" => println!("{}", serde_json::to_string_pretty(&configs_json(quick)).unwrap()),
        "run" => {
            let out = opt("--out").unwrap_or_else(|| usage());
            let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let threads: usize = opt("--threads").map(|t| t.parse().unwrap_or_else(|_| usage())).unwrap_or(0);
            let threads = if threads == 0 { nproc } else { threads };
            let (torch, torch_reason): (Option<Value>, Option<String>) = if let Some(p) = opt("--torch-json") {
                match std::fs::read_to_string(&p).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
                    Some(v) if v.get("available").and_then(|a| a.as_bool()) == Some(true) => (Some(v), None),
                    Some(v) => (None, Some(v.get("reason").and_then(|r| r.as_str()).unwrap_or("torch reference failed").to_string())),
                    None => (None, Some(format!("could not read the torch reference output {p}"))),
                }
            } else {
                (None, Some(opt("--torch-null").unwrap_or_else(|| "torch reference not run".into())))
            };
            let load_before = std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string());
            let started = Instant::now();
            let cpu = cpu_model();
            println!("dart-bench: {cpu}, nproc {nproc}, {threads} threads{}", if quick { " (quick)" } else { "" });
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
            let gemm: Vec<Value> = if flag("--skip-gemm") {
                Vec::new()
            } else {
                println!("GEMM (dart_core::ops::matmul::matmul::<f32>, rayon pool of {threads} threads)");
                gemm_cases().iter().map(|c| bench_gemm(&pool, c, quick)).collect()
            };
            drop(pool);
            let only = opt("--only");
            let models: Vec<Value> = bench_configs(quick).iter().filter(|bc| only.as_deref().is_none_or(|o| o == bc.name)).map(|bc| bench_model(bc, threads, torch.as_ref())).collect();
            let worst = models.iter().filter_map(|m| m["routing_overhead_ratio"].as_f64()).fold(f64::NAN, f64::max);
            let result = json!({
                "schema": 1,
                "benchmark": "dart-rl engine-cpu",
                "date": utc_now(),
                "quick": quick,
                "machine": {
                    "cpu_model": cpu,
                    "cpu_flags": cpu_flags(),
                    "nproc": nproc,
                    "threads_used": threads,
                    "os": sh("uname", &["-srm"]),
                    "loadavg_before": load_before,
                    "loadavg_after": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
                },
                "git": git_info(),
                "toolchain": {"rustc": sh("rustc", &["--version"]), "profile": if cfg!(debug_assertions) { "debug" } else { "release" }},
                "dtype": "f32",
                "gemm": gemm,
                "models": models,
                "routing_overhead_ratio": round(worst, 4),
                "routing_overhead_ratio_definition": "median time of forward+backward+step with DART (2 slots, rank 8 each, routed in alternating spans) / the same with one rank-16 adapter on every token; same tokens and targets; measured interleaved in one run; the top-level value is the worst over models",
                "routing_overhead_target": ROUTING_TARGET,
                "routing_overhead_ok": worst <= ROUTING_TARGET,
                "torch": torch.as_ref().map(|t| json!({
                    "torch_version": t.get("torch_version"), "transformers_version": t.get("transformers_version"),
                    "peft_version": t.get("peft_version"), "threads": t.get("threads"), "attn_implementation": t.get("attn_implementation"),
                    "note": t.get("note"),
                })),
                "torch_null_reason": torch_reason,
                "wall_s": round(started.elapsed().as_secs_f64(), 1),
            });
            if let Some(dir) = std::path::Path::new(&out).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap() + "\n").expect("write result");
            println!("routing_overhead_ratio (worst) {:.3} (target <= {ROUTING_TARGET}); wrote {out} in {:.0}s", worst, started.elapsed().as_secs_f64());
        }
        _ => usage(),
    }
}
