//! Shared helpers of the integration tests.
#![allow(dead_code)]
use dart_core::{AdapterSpec, Engine, EngineOptions, ModelConfig};
use std::path::PathBuf;

pub fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft-tiny").join(p)
}

/// The model-family fixtures (scripts/make_model_fixtures.py).
pub const MODEL_FIXTURES: [&str; 4] = ["llama-mlp-bias", "llama3-rope", "qwen3", "yarn-rope"];

pub fn model_fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(p)
}

pub fn tiny_config(tie: bool, model_type: &str) -> ModelConfig {
    tiny_config_with(tie, model_type, serde_json::json!({}))
}

/// `tiny_config` with more config.json keys (e.g. `mlp_bias`, `rope_scaling`).
pub fn tiny_config_with(tie: bool, model_type: &str, extra: serde_json::Value) -> ModelConfig {
    let mut c = serde_json::json!({"model_type": model_type, "vocab_size": 19, "hidden_size": 12, "intermediate_size": 10,
        "num_hidden_layers": 2, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 4, "rms_norm_eps": 1e-6,
        "rope_theta": 10000, "tie_word_embeddings": tie, "attention_bias": true});
    for (k, v) in extra.as_object().expect("an object") {
        c[k] = v.clone();
    }
    ModelConfig::from_json(&c.to_string()).unwrap()
}

/// The architecture variants beyond Qwen2/Llama: Qwen3 (q/k norm) with YaRN
/// RoPE, and Llama with MLP biases and llama3 RoPE.
pub fn variant_configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("qwen3 yarn", tiny_config_with(false, "qwen3", serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4}}))),
        (
            "llama mlp_bias llama3",
            tiny_config_with(false, "llama", serde_json::json!({"mlp_bias": true, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}})),
        ),
    ]
}

/// The cpu backend (these tests check cpu semantics: f64, bit-identity).
pub fn opts(threads: usize) -> EngineOptions {
    EngineOptions { threads, seed: 7, backend: dart_core::BackendKind::Cpu }
}

/// Two adapters with non-zero B so both matter.
pub fn two_adapters<T: dart_core::float::Float>(e: &mut Engine<T>) {
    let mut a = AdapterSpec::new(3, 6.0, &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 11).unwrap();
    a.b_init_std = 0.3;
    let mut b = AdapterSpec::new(2, 3.0, &["q_proj", "v_proj", "down_proj"], 12).unwrap();
    b.b_init_std = 0.3;
    e.add_adapter(a).unwrap();
    e.add_adapter(b).unwrap();
}

pub struct Batch {
    pub tokens: Vec<i32>,
    pub seq_lens: Vec<i32>,
    pub routes: Vec<i32>,
    pub dlogp: Vec<f64>,
}

pub fn batch() -> Batch {
    Batch {
        tokens: vec![3, 7, 1, 18, 0, 5, 5, 9, 2, 11, 4, 6],
        seq_lens: vec![5, 1, 6],
        routes: vec![0, 0, 1, 1, -1, 1, 0, 1, 1, -1, 0, 0],
        dlogp: vec![0.0, 0.7, -1.2, 0.4, 1.1, 0.0, 0.0, -0.5, 0.9, 1.3, -0.8, 0.6],
    }
}

pub fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rel * w.abs().max(1.0), "{what}[{i}]: got {g}, want {w} (rel tol {rel})");
    }
}
