//! Our engine against Hugging Face transformers + peft (fixture made by
//! scripts/make_peft_fixture.py, computed in f64). Tolerances: the f64 engine
//! must match to 1e-9 relative (1e-6 for gradients, which the
//! fixture stores in f32); the f32 engine to 1e-4 relative (max(1,|x|)).
mod common;
use common::*;
use dart_core::checkpoint::{load_adapter, load_model};
use dart_core::io::TensorStore;
use dart_core::float::Float;

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

fn case() -> Case {
    // serde's camelCase of d_ldlogp is the fixture's "dLdlogp".
    serde_json::from_str(&std::fs::read_to_string(fixture("case.json")).unwrap()).unwrap()
}

fn check<T: Float>(rel: f64) {
    let c = case();
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
