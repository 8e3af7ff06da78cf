//! What the benchmark binaries share: the adapter setup and model shapes of
//! engine-cpu.json, the training batch (tokens, DART routes) and one timed
//! forward + backward + step, small statistics, machine / git / toolchain
//! records, the reference (torch) output reader and the result writer.
use dart_core::{AdamW, Engine, StepOptions};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
/// DART: two rank-8 slots, routed in spans.
pub const DART_RANK: usize = 8;
/// The torch reference (and the cpu comparison): one rank-16 slot on every
/// token, same LoRA FLOPs as two rank-8 slots.
pub const REF_RANK: usize = 16;
pub const ALPHA_PER_RANK: f64 = 2.0;
pub const SPAN_MIN: usize = 8;
pub const SPAN_MAX: usize = 48;

/// `{"rank", "alpha", "targets"}` of the reference adapter (what the torch scripts attach).
pub fn reference_adapter_json() -> Value {
    json!({"rank": REF_RANK, "alpha": ALPHA_PER_RANK * REF_RANK as f64, "targets": TARGETS})
}

// ---- model shapes -------------------------------------------------------------

/// A benchmark model: its name and HF config.
pub struct ModelShape {
    pub name: &'static str,
    pub hf: Value,
}

/// The two benchmark models: a small qwen2 and the SmolLM2-135M shape.
pub fn model_shapes() -> [ModelShape; 2] {
    [
        ModelShape {
            name: "qwen2-4L-d256",
            hf: json!({
                "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                "vocab_size": 8192, "hidden_size": 256, "intermediate_size": 1024,
                "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
                "max_position_embeddings": 2048, "hidden_act": "silu"
            }),
        },
        ModelShape {
            name: "smollm2-135m-shape",
            hf: json!({
                "model_type": "llama", "architectures": ["LlamaForCausalLM"],
                "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true,
                "attention_bias": false, "max_position_embeddings": 8192, "hidden_act": "silu"
            }),
        },
    ]
}

/// One entry of a training `configs` list (read by torch_ref.py / torch_gpu_ref.py).
pub fn train_config_json(name: &str, hf: &Value, seqs: usize, seq_len: usize, warmup: usize, reps: usize) -> Value {
    json!({
        "name": name, "hf_config": hf, "seqs": seqs, "seq_len": seq_len,
        "warmup": warmup, "reps": reps,
        "reference_adapter": reference_adapter_json(),
    })
}

// ---- GEMM shapes --------------------------------------------------------------

/// One GEMM shape: C[m,n] = A[m,k] B (B stored [n,k] when `tb`).
pub struct GemmShape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// B stored [n,k] (the linear-forward layout y = x W^T) when true.
    pub tb: bool,
}

/// The GEMMs of the two benchmark models (projections, MLP, LM head).
pub fn transformer_gemm_shapes() -> Vec<GemmShape> {
    let mut v = Vec::new();
    let c = |name: String, m, n, k, tb| GemmShape { name, m, n, k, tb };
    for (d, f, t) in [(256usize, 1024usize, 512usize), (576, 1536, 256)] {
        v.push(c(format!("d{d} qo: tokens x hidden x hidden"), t, d, d, true));
        v.push(c(format!("d{d} gate/up: tokens x 4h x hidden"), t, f, d, true));
        v.push(c(format!("d{d} down: tokens x hidden x 4h"), t, d, f, true));
        v.push(c(format!("d{d} down dx (backward): tokens x 4h x hidden"), t, f, d, false));
    }
    v.push(c("lm head 512 x 49152 x 576".into(), 512, 49152, 576, true));
    v.push(c("lm head dx (backward) 512 x 576 x 49152".into(), 512, 576, 49152, false));
    v
}

// ---- small helpers ------------------------------------------------------------

/// Deterministic xorshift generator (tokens, span lengths, test data).
pub struct Rng(pub u64);
impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn median(xs: &[f64]) -> f64 {
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

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

// ---- training batch -----------------------------------------------------------

/// A fixed forward + backward + step batch: random tokens, DART routes (slots
/// alternating in spans of SPAN_MIN..=SPAN_MAX tokens, like turns of a
/// multi-agent trajectory) or every token on slot 0, and the upstream gradient
/// of L = -mean logprob (policy-gradient shaped).
pub struct TrainBatch {
    pub tokens: Vec<i32>,
    pub seq_lens: Vec<i32>,
    pub routes: Vec<i32>,
    pub dlogp: Vec<f32>,
    pub step: StepOptions,
}

impl TrainBatch {
    pub fn new(vocab: usize, seqs: usize, seq_len: usize, dart: bool) -> TrainBatch {
        let mut rng = Rng(0xD1B54A32D192ED03);
        let n = seqs * seq_len;
        let tokens: Vec<i32> = (0..n).map(|_| rng.below(vocab) as i32).collect();
        let seq_lens = vec![seq_len as i32; seqs];
        let mut routes = Vec::with_capacity(n);
        let mut span_rng = Rng(0x2545F4914F6CDD1D);
        for s in 0..seqs {
            let mut slot = (s % 2) as i32;
            let mut left = seq_len;
            while left > 0 {
                let span = (SPAN_MIN + span_rng.below(SPAN_MAX - SPAN_MIN + 1)).min(left);
                routes.extend(std::iter::repeat_n(if dart { slot } else { 0 }, span));
                slot ^= 1;
                left -= span;
            }
        }
        let dlogp = vec![-1.0 / n as f32; n];
        let step = StepOptions { adamw: AdamW { lr: 1e-4, ..AdamW::default() }, slots: None };
        TrainBatch { tokens, seq_lens, routes, dlogp, step }
    }

    /// One forward + backward + AdamW step of `engine`; returns the seconds of each phase.
    pub fn iter(&self, engine: &mut Engine<f32>) -> [f64; 3] {
        let t0 = Instant::now();
        let lp = engine.forward(&self.tokens, &self.seq_lens, &self.routes).expect("forward");
        let t1 = Instant::now();
        std::hint::black_box(&lp);
        engine.backward(&self.dlogp).expect("backward");
        let t2 = Instant::now();
        engine.step(&self.step).expect("step");
        let t3 = Instant::now();
        [(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()]
    }
}

// ---- machine, git, toolchain ---------------------------------------------------

/// stdout of a command (trimmed) when it runs and succeeds.
pub fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The CPU class this process measures: "avx512" when gemm and our kernels
/// take their AVX-512 paths, "avx2" when neither does (an AVX2 CPU, or a
/// build without the `avx512` feature), "mixed" when only gemm does
/// (DART_CPU_NO_AVX512=1 with the feature built), else "portable".
pub fn cpu_class() -> &'static str {
    let gemm512 = dart_core::ops::matmul::gemm_isa().contains("avx512");
    match (dart_core::ops::cpu::kernel_class(), gemm512) {
        ("avx512", true) => "avx512",
        ("avx2", false) => "avx2",
        ("avx2", true) => "mixed",
        _ => "portable",
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// The SIMD flags of /proc/cpuinfo that matter to the kernels (those present).
pub fn cpu_flags() -> Vec<String> {
    let want = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"];
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("flags")).map(|l| l.to_string()))
        .unwrap_or_default();
    let have: Vec<&str> = flags.split_whitespace().collect();
    want.iter().filter(|w| have.contains(w)).map(|w| w.to_string()).collect()
}

pub fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string())
}

/// `uname -srm`.
pub fn os() -> Option<String> {
    sh("uname", &["-srm"])
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// UTC date-time from the system clock, ISO 8601.
pub fn utc_now() -> String {
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

/// `{"commit", "dirty", "dirty_files"}` of the working tree.
pub fn git_info() -> Value {
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

/// `{"rustc", "profile"}` of this build.
pub fn toolchain() -> Value {
    json!({"rustc": sh("rustc", &["--version"]), "profile": if cfg!(debug_assertions) { "debug" } else { "release" }})
}

// ---- reference input, result output --------------------------------------------

/// Reads the reference output named by `--torch-json` (`torch_json`), or else
/// the reason given by `--torch-null` (`torch_null`, only asked for then).
/// Returns (the reference when it reports `available: true`, else why not);
/// `what` names the reference in those reasons (e.g. "torch").
pub fn load_reference(torch_json: Option<String>, torch_null: impl FnOnce() -> Option<String>, what: &str) -> (Option<Value>, Option<String>) {
    if let Some(p) = torch_json {
        match std::fs::read_to_string(&p).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
            Some(v) if v.get("available").and_then(|a| a.as_bool()) == Some(true) => (Some(v), None),
            Some(v) => (None, Some(v.get("reason").and_then(|r| r.as_str()).map(str::to_string).unwrap_or_else(|| format!("{what} reference failed")))),
            None => (None, Some(format!("could not read the {what} reference output {p}"))),
        }
    } else {
        (None, Some(torch_null().unwrap_or_else(|| format!("{what} reference not run"))))
    }
}

/// Writes `result` as pretty JSON (and a newline) to `out`, creating its folder.
pub fn write_result(out: &str, result: &Value) {
    if let Some(dir) = std::path::Path::new(out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(out, serde_json::to_string_pretty(result).unwrap() + "\n").expect("write result");
}

/// The command line shared by the bench binaries: `<cmd> [--flag] [--opt VALUE]`.
/// A missing or malformed value calls `usage` (which exits).
pub struct Args {
    args: Vec<String>,
    usage: fn() -> !,
}

impl Args {
    pub fn from_env(usage: fn() -> !) -> Self {
        Args { args: std::env::args().skip(1).collect(), usage }
    }
    pub fn command(&self) -> String {
        self.args.first().cloned().unwrap_or_else(|| (self.usage)())
    }
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
    pub fn opt(&self, name: &str) -> Option<String> {
        self.args.iter().position(|a| a == name).map(|i| self.args.get(i + 1).cloned().unwrap_or_else(|| (self.usage)()))
    }
    /// `--threads N`, where absent or 0 means every core.
    pub fn threads(&self) -> usize {
        let t: usize = self.opt("--threads").map(|t| t.parse().unwrap_or_else(|_| (self.usage)())).unwrap_or(0);
        if t == 0 {
            nproc()
        } else {
            t
        }
    }
}

/// What every bench binary's `run` starts from: its flags, the reference
/// run (read from `--torch-json`, or why there is none) and the machine
/// readings taken before the first timed work.
pub struct RunStart {
    pub out: String,
    pub quick: bool,
    pub threads: usize,
    pub nproc: usize,
    pub cpu: String,
    pub reference: Option<Value>,
    pub reference_null_reason: Option<String>,
    pub load_before: Option<String>,
    pub started: Instant,
}

impl Args {
    /// `configs [--quick]` prints `configs(quick)`; `run` calls `run` with
    /// the shared start (`reference` names the reference in messages);
    /// anything else prints the usage.
    pub fn dispatch(&self, configs: impl FnOnce(bool) -> Value, reference: &str, run: impl FnOnce(RunStart)) {
        let quick = self.flag("--quick");
        match self.command().as_str() {
            "configs" => println!("{}", serde_json::to_string_pretty(&configs(quick)).expect("configs are JSON")),
            "run" => {
                let out = self.opt("--out").unwrap_or_else(|| (self.usage)());
                let threads = self.threads();
                let (reference, reference_null_reason) = load_reference(self.opt("--torch-json"), || self.opt("--torch-null"), reference);
                // The reference ran first (in its own process): its load
                // average readings come with it.
                let load_before = loadavg();
                run(RunStart { out, quick, threads, nproc: nproc(), cpu: cpu_model(), reference, reference_null_reason, load_before, started: Instant::now() })
            }
            _ => (self.usage)(),
        }
    }
}

impl RunStart {
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The machine record of a result: cpu, cores, threads, OS and the load
    /// average before and now, plus a binary's own `extra` fields.
    pub fn machine(&self, extra: Value) -> Value {
        let mut m = json!({
            "cpu_model": self.cpu, "nproc": self.nproc, "threads_used": self.threads, "os": os(),
            "cpu_class": cpu_class(), "kernel_class": dart_core::ops::cpu::kernel_class(), "gemm_isa": dart_core::ops::matmul::gemm_isa(),
            "avx512_feature_built": cfg!(feature = "avx512"),
            "loadavg_before": self.load_before, "loadavg_after": loadavg(),
        });
        merge(&mut m, extra);
        m
    }

    /// A result: the fields every bench writes (schema, name, date, quick,
    /// machine, git, toolchain, dtype, wall time), then `body`'s.
    pub fn result(&self, benchmark: &str, machine_extra: Value, body: Value) -> Value {
        let mut r = json!({
            "schema": 1, "benchmark": benchmark, "date": utc_now(), "quick": self.quick,
            "machine": self.machine(machine_extra), "git": git_info(), "toolchain": toolchain(), "dtype": "f32",
            "wall_s": round(self.elapsed_s(), 1),
        });
        merge(&mut r, body);
        r
    }
}

/// Adds the fields of object `extra` to object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        a.extend(b);
    }
}
