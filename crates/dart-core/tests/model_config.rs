//! Every config.json key that changes the computation is implemented or
//! refused with a DART_CONFIG error naming the key, its value and what is
//! supported; a weights file holding tensors the model would not read is
//! refused. One test per key; each prints the error a user sees.
mod common;
use common::*;
use dart_core::checkpoint::load_model;
use dart_core::{DartError, ModelConfig};
use serde_json::{json, Value};

fn base(model_type: &str) -> Value {
    json!({"model_type": model_type, "vocab_size": 19, "hidden_size": 16, "intermediate_size": 10,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8})
}

fn with(model_type: &str, key: &str, v: Value) -> String {
    let mut c = base(model_type);
    c[key] = v;
    c.to_string()
}

/// Parses; must fail with DART_CONFIG and a message containing every `needle`.
fn refused(text: &str, needles: &[&str]) -> String {
    let e = ModelConfig::from_json(text).expect_err(text);
    assert_eq!(e.code(), "DART_CONFIG", "{e}");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    println!("{msg}");
    msg
}

fn accepted(text: &str) -> ModelConfig {
    ModelConfig::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn unknown_model_type_is_refused() {
    refused(&base("mistral").to_string(), &["model_type", "\"mistral\"", "\"llama\", \"qwen2\" or \"qwen3\""]);
}

#[test]
fn unknown_keys_are_refused_and_inert_keys_accepted() {
    refused(&with("llama", "quantization_config", json!({"quant_method": "gptq"})), &["quantization_config", "gptq", "unknown config key"]);
    refused(&with("qwen2", "some_future_flag", json!(true)), &["some_future_flag", "unknown config key"]);
    for k in ["torch_dtype", "bos_token_id", "architectures", "transformers_version", "use_cache", "pretraining_tp"] {
        accepted(&with("llama", k, json!(1)));
    }
}

#[test]
fn mlp_bias() {
    let c = accepted(&with("llama", "mlp_bias", json!(true)));
    assert!(c.mlp_bias());
    assert!(!accepted(&with("llama", "mlp_bias", json!(false))).mlp_bias());
    refused(&with("qwen2", "mlp_bias", json!(true)), &["mlp_bias = true", "qwen2"]);
    refused(&with("qwen3", "mlp_bias", json!(true)), &["mlp_bias = true", "qwen3"]);
}

#[test]
fn attention_bias() {
    let l = accepted(&with("llama", "attention_bias", json!(true)));
    assert!(l.qkv_bias() && l.o_bias());
    let q3 = accepted(&with("qwen3", "attention_bias", json!(true)));
    assert!(q3.qkv_bias() && q3.o_bias());
    let q2 = accepted(&base("qwen2").to_string());
    assert!(q2.qkv_bias() && !q2.o_bias());
    refused(&with("qwen2", "attention_bias", json!(false)), &["attention_bias = false", "qwen2"]);
}

#[test]
fn head_dim() {
    let mut c = base("qwen3");
    c.as_object_mut().unwrap().remove("head_dim");
    assert_eq!(accepted(&c.to_string()).head_dim(), 128, "Qwen3Config's default");
    let mut l = base("llama");
    l.as_object_mut().unwrap().remove("head_dim");
    assert_eq!(accepted(&l.to_string()).head_dim(), 8, "hidden_size / heads");
    refused(&with("llama", "head_dim", json!(7)), &["head_dim = 7", "even"]);
}

#[test]
fn hidden_act() {
    accepted(&with("llama", "hidden_act", json!("silu")));
    refused(&with("llama", "hidden_act", json!("gelu")), &["hidden_act", "\"gelu\"", "\"silu\""]);
}

#[test]
fn tie_word_embeddings() {
    assert!(accepted(&with("llama", "tie_word_embeddings", json!(true))).tie_word_embeddings);
    refused(&with("llama", "tie_word_embeddings", json!("yes")), &["tie_word_embeddings"]);
}

#[test]
fn rope_scaling_types() {
    for (key, v) in [
        ("rope_scaling", json!({"rope_type": "linear", "factor": 2.0})),
        ("rope_scaling", json!({"type": "linear", "factor": 2.0})),
        ("rope_parameters", json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
        ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})),
        ("rope_parameters", json!({"rope_type": "default", "rope_theta": 10000.0})),
    ] {
        accepted(&with("llama", key, v));
    }
    refused(&with("llama", "rope_scaling", json!({"rope_type": "dynamic", "factor": 2.0})), &["rope_scaling", "\"dynamic\"", "\"llama3\""]);
    refused(&with("qwen2", "rope_scaling", json!({"rope_type": "longrope", "factor": 2.0})), &["\"longrope\""]);
    refused(&with("llama", "rope_scaling", json!({"rope_type": "ntk-by-parts"})), &["\"ntk-by-parts\"", "not supported"]);
    refused(&with("llama", "rope_scaling", json!({"rope_type": "llama3", "factor": 8.0})), &["llama3", "low_freq_factor"]);
    refused(&with("llama", "rope_scaling", json!({"rope_type": "linear", "factor": 2.0, "mystery": 1})), &["mystery", "linear"]);
    refused(&with("llama", "rope_scaling", json!({"rope_type": "linear", "factor": -2.0})), &["factor = -2"]);
    // The same scaling twice must agree.
    let mut c = base("llama");
    c["rope_scaling"] = json!({"rope_type": "linear", "factor": 2.0});
    c["rope_parameters"] = json!({"rope_type": "linear", "factor": 4.0});
    refused(&c.to_string(), &["disagree"]);
    let mut c = base("llama");
    c["rope_theta"] = json!(10000.0);
    c["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 500000.0});
    refused(&c.to_string(), &["rope_theta", "disagree"]);
}

#[test]
fn sliding_window_keys() {
    let mut c = base("qwen2");
    c["use_sliding_window"] = json!(false);
    c["sliding_window"] = json!(4096);
    c["max_window_layers"] = json!(28);
    accepted(&c.to_string());
    c["use_sliding_window"] = json!(true);
    refused(&c.to_string(), &["use_sliding_window = true", "full attention"]);
    refused(&with("qwen3", "layer_types", json!(["sliding_attention"])), &["layer_types[0]", "sliding_attention", "full_attention"]);
    accepted(&with("qwen3", "layer_types", json!(["full_attention"])));
}

#[test]
fn attention_dropout() {
    accepted(&with("llama", "attention_dropout", json!(0.0)));
    refused(&with("llama", "attention_dropout", json!(0.1)), &["attention_dropout = 0.1", "expected 0"]);
}

#[test]
fn partial_rotary_factor() {
    accepted(&with("llama", "partial_rotary_factor", json!(1.0)));
    refused(&with("llama", "partial_rotary_factor", json!(0.5)), &["partial_rotary_factor = 0.5", "expected 1"]);
}

#[test]
fn qk_norm_style_keys() {
    for k in ["use_qk_norm", "qk_norm", "qk_layernorm"] {
        accepted(&with("llama", k, json!(false)));
        refused(&with("llama", k, json!(true)), &[k, "= true", "expected false"]);
    }
    assert!(accepted(&base("qwen3").to_string()).qk_norm(), "Qwen3 has q/k norm without a key");
    assert!(!accepted(&base("qwen2").to_string()).qk_norm());
}

/// The bug this closes: a Llama folder with `mlp_bias: true` whose config
/// says otherwise must not load (its gate/up/down biases would be dropped).
#[test]
fn weights_the_config_does_not_describe_are_refused() {
    let src = model_fixture("llama-mlp-bias/model");
    let dir = std::env::temp_dir().join(format!("dart-unread-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["mlp_bias"] = json!(false);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let e = load_model::<f32>(&dir, &opts(1)).map(|_| ()).expect_err("mlp biases dropped silently");
    let msg = e.to_string();
    println!("{msg}");
    assert!(matches!(e, DartError::Config(_)), "{e:?}");
    assert!(msg.contains("mlp.gate_proj.bias") && msg.contains("mlp_bias"), "{msg}");
    // With the config telling the truth, it loads.
    cfg["mlp_bias"] = json!(true);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    load_model::<f32>(&dir, &opts(1)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each fixture's own config.json (as transformers wrote it) loads.
#[test]
fn transformers_written_configs_load() {
    for name in MODEL_FIXTURES {
        let text = std::fs::read_to_string(model_fixture(&format!("{name}/model/config.json"))).unwrap();
        accepted(&text);
    }
    accepted(&std::fs::read_to_string(fixture("model/config.json")).unwrap());
    accepted(&std::fs::read_to_string(fixture("llama-tied/config.json")).unwrap());
}

/// A model read from memory (the WebAssembly build's path: its host reads the
/// files) is the model read from its folder: the same weights, tensor for
/// tensor, and the same refusal of a tensor the config does not read.
#[test]
fn model_from_bytes_is_load_model() {
    use dart_core::checkpoint::model_from_bytes;
    let dir = fixture("model");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let from_dir = load_model::<f32>(&dir, &opts(1)).unwrap();
    let from_bytes = model_from_bytes::<f32>(&config, bytes.clone(), &opts(1)).unwrap();
    let names = dart_core::weights::Weights::<f32>::names_shapes(from_dir.config());
    assert!(!names.is_empty());
    for (i, (name, _)) in names.iter().enumerate() {
        assert_eq!(from_dir.base_param(i).unwrap(), from_bytes.base_param(i).unwrap(), "{name}");
    }
    println!("{} tensors equal", names.len());
    let mut cfg: Value = serde_json::from_str(&config).unwrap();
    cfg["num_hidden_layers"] = json!(cfg["num_hidden_layers"].as_u64().unwrap() - 1);
    cfg.as_object_mut().unwrap().remove("layer_types");
    let e = model_from_bytes::<f32>(&cfg.to_string(), bytes, &opts(1)).map(|_| ()).expect_err("a layer dropped silently");
    println!("{e}");
    assert!(matches!(e, DartError::Config(_)) && e.to_string().contains("model.layers.1."), "{e}");
}
