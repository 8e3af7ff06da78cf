//! Decode loop for profiling (`perf record`): one session, `batch` prompts of
//! 32 tokens, then `tokens` greedy decode steps, printing ms per step.
//! `cargo run --release -p dart-bench --example decode_profile -- [model-index 0|1] [batch] [tokens] [prompt-len]`
use dart_bench::common::{model_shapes, ALPHA_PER_RANK, DART_RANK, TARGETS};
use dart_core::generate::{GenPlan, SampleOptions, Session};
use dart_core::roles::RoleRules;
use dart_core::{AdapterSpec, Engine, EngineOptions, ModelConfig};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().expect("numeric argument")).collect();
    let (mi, batch, n) = (a.first().copied().unwrap_or(1), a.get(1).copied().unwrap_or(16), a.get(2).copied().unwrap_or(64));
    let prompt_len = a.get(3).copied().unwrap_or(32);
    let shape = &model_shapes()[mi];
    let cfg = ModelConfig::from_json(&shape.hf.to_string()).expect("config");
    let opts = EngineOptions { threads: 0, seed: 0, backend: dart_core::BackendKind::Cpu };
    let mut engine = Engine::<f32>::random(cfg.clone(), 1234, &opts).expect("engine");
    for i in 0..2 {
        let mut spec = AdapterSpec::new(DART_RANK, ALPHA_PER_RANK * DART_RANK as f64, &TARGETS, 100 + i).expect("spec");
        spec.b_init_std = 0.02;
        engine.add_adapter(spec).expect("adapter");
    }
    let v = cfg.vocab_size as i32;
    let rules = RoleRules::new(vec![v - 1, v - 2], vec![v - 3, v - 4]).expect("rules");
    let mut s = Session::new(&engine, GenPlan::single([1, 0, 1, 1]), rules, 7).expect("session");
    for b in 0..batch {
        let p: Vec<i32> = (0..prompt_len).map(|j| ((b * 131 + j * 17) % (v as usize - 4)) as i32).collect();
        s.add_sequence(&engine, &p).expect("sequence");
    }
    let so = |max_new_tokens| SampleOptions { max_new_tokens, temperature: 0.0, top_p: 1.0, top_k: 0, eos: vec![], stop: vec![], pause_on_tool_call: true };
    s.generate(&engine, &so(1)).expect("prefill");
    let t = Instant::now();
    s.generate(&engine, &so(n)).expect("decode");
    let huge = std::fs::read_to_string("/proc/self/smaps_rollup").ok().and_then(|s| s.lines().find(|l| l.starts_with("AnonHugePages")).map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()));
    println!("{}: batch {batch}, prompt {prompt_len}, {n} steps: {:.2} ms/step (AnonHugePages {} kB)", shape.name, 1e3 * t.elapsed().as_secs_f64() / n as f64, huge.unwrap_or_else(|| "?".into()));
}
