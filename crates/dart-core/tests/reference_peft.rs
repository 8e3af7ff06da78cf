//! Our engine against Hugging Face transformers + peft (fixture made by
//! scripts/make_peft_fixture.py, computed in f64). Tolerances: the f64 engine
//! must match to 1e-9 relative (1e-6 for gradients, which the
//! fixture stores in f32); the f32 engine to 1e-4 relative (max(1,|x|)).
mod common;
use common::*;
use dart_core::checkpoint::{load_adapter, load_model};
use dart_core::io::TensorStore;
use dart_core::float::Float;
use dart_core::ops::rope::RopeScaling;
use std::path::Path;

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

fn case(root: &Path) -> Case {
    // serde's camelCase of d_ldlogp is the fixture's "dLdlogp".
    serde_json::from_str(&std::fs::read_to_string(root.join("case.json")).unwrap()).unwrap()
}

/// A fixture folder in the peft-tiny layout: model/, adapters/{reason,tool}/,
/// case.json, grads-{reason,tool}.safetensors.
fn check<T: Float>(rel: f64) {
    check_dir::<T>(&fixture(""), rel)
}

fn check_dir<T: Float>(root: &Path, rel: f64) {
    let fixture = |p: &str| root.join(p);
    let c = case(root);
    let mut e = load_model::<T>(&fixture("model"), &opts(2)).unwrap();
    let base: Vec<f64> = e.forward(&c.tokens, &c.seq_lens, &vec![-1; c.tokens.len()]).unwrap().iter().map(|x| x.as_f64()).collect();
    assert_close("logprobsBase", &base, &c.logprobs_base, rel);
    assert_eq!(load_adapter(&mut e, &fixture("adapters/reason")).unwrap(), 0);
    assert_eq!(load_adapter(&mut e, &fixture("adapters/tool")).unwrap(), 1);
    let lp: Vec<f64> = e.forward(&c.tokens, &c.seq_lens, &c.routes).unwrap().iter().map(|x| x.as_f64()).collect();
    assert_close("logprobs", &lp, &c.logprobs, rel);
    let g: Vec<T> = c.d_ldlogp.iter().map(|&x| T::from_f64(x)).collect();
    e.backward(&g).unwrap();
    for (slot, file) in [(0, "grads-reason.safetensors"), (1, "grads-tool.safetensors")] {
        let store = TensorStore::open_files(&[fixture(file)]).unwrap();
        let a = e.adapter(slot).unwrap();
        let ns = a.names_shapes();
        assert_eq!(ns.len(), store.names().len(), "{file}: tensor count");
        for ((name, shape), grad) in ns.iter().zip(a.grads()) {
            let want: Vec<f64> = store.get::<f64>(name, shape).unwrap();
            let got: Vec<f64> = grad.iter().map(|x| x.as_f64()).collect();
            // The fixture stores gradients in f32: no tighter than ~1e-7 relative.
            assert_close(name, &got, &want, rel.max(1e-6));
        }
    }
}

#[test]
fn f64_engine_matches_transformers_peft() {
    check::<f64>(1e-9);
}

#[test]
fn f32_engine_matches_transformers_peft() {
    check::<f32>(1e-4);
}

#[test]
fn bf16_sharded_and_f16_folders_load_the_rounded_weights() {
    let f32m = load_model::<f32>(&fixture("model"), &opts(1)).unwrap();
    for (dir, round) in [
        ("model-bf16-sharded", (|x: f32| half::bf16::from_f32(x).to_f32()) as fn(f32) -> f32),
        ("model-f16", |x: f32| half::f16::from_f32(x).to_f32()),
    ] {
        let m = load_model::<f32>(&fixture(dir), &opts(1)).unwrap();
        for (a, b) in f32m.weights().fields().iter().zip(m.weights().fields()) {
            let rounded: Vec<f32> = a.iter().map(|&x| round(x)).collect();
            assert_eq!(&rounded, b, "{dir}");
        }
    }
}

#[test]
fn tied_llama_matches_transformers() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Expected {
        tokens: Vec<i32>,
        seq_lens: Vec<i32>,
        logprobs: Vec<f64>,
    }
    let x: Expected = serde_json::from_str(&std::fs::read_to_string(fixture("llama-tied/expected.json")).unwrap()).unwrap();
    let mut e = load_model::<f64>(&fixture("llama-tied"), &opts(1)).unwrap();
    assert!(e.config().tie_word_embeddings && e.weights().lm_head.is_none());
    let lp: Vec<f64> = e.forward(&x.tokens, &x.seq_lens, &vec![-1; x.tokens.len()]).unwrap();
    assert_close("llama-tied logprobs", &lp, &x.logprobs, 1e-9);
}

/// The model-family fixtures of scripts/make_model_fixtures.py: Llama with
/// MLP biases, Llama 3 RoPE scaling, Qwen3 (q/k norm, explicit head_dim) and
/// YaRN RoPE, each against transformers + peft in f64 and f32.
#[test]
fn model_families_match_transformers_peft() {
    for name in MODEL_FIXTURES {
        check_dir::<f64>(&model_fixture(name), 1e-9);
        check_dir::<f32>(&model_fixture(name), 1e-4);
    }
}

/// The fixtures really exercise their variant: read as the plain family
/// (no MLP bias, no RoPE scaling, no q/k norm) they give other logprobs.
#[test]
fn model_family_fixtures_depend_on_their_variant() {
    for (name, edit) in [
        ("llama-mlp-bias", r#""mlp_bias": false"#),
        ("llama3-rope", r#""rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}"#),
        ("yarn-rope", r#""rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}"#),
    ] {
        let root = model_fixture(name);
        let text = std::fs::read_to_string(root.join("model/config.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let patch: serde_json::Value = serde_json::from_str(&format!("{{{edit}}}")).unwrap();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        let cfg = dart_core::ModelConfig::from_json(&v.to_string()).unwrap();
        let c = case(&root);
        let store = TensorStore::open_model_dir(&root.join("model")).unwrap();
        // Weights read under the edited config (extra bias tensors skipped).
        let w = dart_core::weights::Weights::<f64>::build(&cfg, |n, s| store.get(n, s)).unwrap();
        let mut e = dart_core::Engine::<f64>::new(cfg, w, &opts(1)).unwrap();
        let lp = e.forward(&c.tokens, &c.seq_lens, &vec![-1; c.tokens.len()]).unwrap();
        let diff = lp.iter().zip(&c.logprobs_base).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(diff > 1e-3, "{name}: the plain reading gives the same logprobs (max diff {diff})");
    }
}

/// RoPE inverse frequencies and attention factor equal transformers'
/// ROPE_INIT_FUNCTIONS (f64 port checked against transformers' f32 values
/// when the fixture was made) for default, linear, llama3 and yarn.
#[test]
fn rope_scaling_matches_transformers() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        head_dim: usize,
        max_position_embeddings: usize,
        rope_parameters: serde_json::Value,
        inv_freq: Vec<f64>,
        inv_freq_transformers: Vec<f64>,
        attention_factor: f64,
    }
    let rows: Vec<Row> = serde_json::from_str(&std::fs::read_to_string(model_fixture("rope-scaling.json")).unwrap()).unwrap();
    assert!(rows.len() >= 8);
    for r in rows {
        let what = r.rope_parameters.to_string();
        let s = RopeScaling::from_json(&r.rope_parameters, r.max_position_embeddings).unwrap();
        let theta = r.rope_parameters["rope_theta"].as_f64().unwrap();
        let (inv, att) = s.inv_freq(r.head_dim, theta);
        assert_close(&format!("{what} inv_freq"), &inv, &r.inv_freq, 1e-12);
        let rel: Vec<f64> = inv.iter().zip(&r.inv_freq_transformers).map(|(a, b)| (a - b).abs() / a).collect();
        assert!(rel.iter().all(|&x| x < 1e-6), "{what}: vs transformers' f32 values {rel:?}");
        assert!((att - r.attention_factor).abs() < 1e-12, "{what}: attention factor {att} vs {}", r.attention_factor);
    }
}
