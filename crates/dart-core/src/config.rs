//! The model configuration, read from a Hugging Face `config.json` (the
//! Llama, Qwen2 and Qwen3 families) and validated before anything is
//! allocated.
//!
//! Every key either means exactly what transformers means by it or is refused
//! with a `DART_CONFIG` error that names the key, its value and what is
//! supported: a trainer that quietly computes another model is the worst
//! failure this project can have. Keys are sorted into three kinds:
//! - keys the engine implements (the fields of [`ModelConfig`]);
//! - keys that do not change the computation ([`INERT_KEYS`]: token ids,
//!   dtype, bookkeeping), accepted and ignored;
//! - everything else, refused, including keys transformers would act on that
//!   the engine does not implement (quantization, qk-norm flags on families
//!   without it, ...) and keys nobody knows.
use crate::error::{DartError, Result};
use crate::ops::rope::RopeScaling;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The model families the engine computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3.x: optional attention and MLP biases, o_proj bias with
    /// `attention_bias`.
    Llama,
    /// Qwen2 / Qwen2.5: q/k/v always biased, o_proj and MLP never.
    Qwen2,
    /// Qwen3 (dense): RMSNorm over each head of q and k before RoPE,
    /// `attention_bias` on q/k/v/o (false by default), `head_dim` 128 by
    /// default.
    Qwen3,
}

impl Family {
    const NAMES: &'static str = "\"llama\", \"qwen2\" or \"qwen3\"";

    fn parse(model_type: Option<&str>) -> Result<Family> {
        match model_type {
            // A config without model_type (tests, hand-written configs) is a Llama.
            None | Some("llama") => Ok(Family::Llama),
            Some("qwen2") => Ok(Family::Qwen2),
            Some("qwen3") => Ok(Family::Qwen3),
            Some(other) => Err(DartError::Config(format!("model_type = {other:?} is not supported, expected {}", Family::NAMES))),
        }
    }
}

/// Keys of Llama/Qwen2/Qwen3 configs (and of transformers' PretrainedConfig)
/// that do not change the forward or backward computation.
pub const INERT_KEYS: &[&str] = &[
    "_name_or_path",
    "name_or_path",
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "use_cache",
    "initializer_range",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "tokenizer_class",
    "id2label",
    "label2id",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "torchscript",
    "_attn_implementation_autoset",
    // Tensor-parallel slicing at pre-training time; the product is the same.
    "pretraining_tp",
    // Generation defaults old transformers versions wrote into config.json.
    "max_length",
    "min_length",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "num_return_sequences",
    "diversity_penalty",
    "output_scores",
    "return_dict_in_generate",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "chunk_size_feed_forward",
    "is_decoder",
    "is_encoder_decoder",
    "add_cross_attention",
    "cross_attention_hidden_size",
    "tie_encoder_decoder",
    "prefix",
    "problem_type",
    "finetuning_task",
    "task_specific_params",
    "tf_legacy_loss",
    "use_bfloat16",
    "pruned_heads",
];

/// Keys that turn on a variant of the architecture the engine does not
/// compute; accepted only when they say "off" (false, null, 0).
const OFF_ONLY_KEYS: &[&str] = &["use_qk_norm", "qk_norm", "qk_layernorm", "use_parallel_residual", "use_sliding_window"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// transformers 5 writes {rope_theta, rope_type, scaling fields} here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: bias on q/k/v/o. Qwen3: bias on q/k/v/o. Qwen2: q/k/v always
    /// biased, so only `true` (or absent) is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Llama: bias on gate/up/down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    /// Must be 0: the engine trains without attention dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_dropout: Option<f64>,
    /// Must be 1: RoPE rotates the whole head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
    /// Qwen2/Qwen3: only read when `use_sliding_window` is true, which is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<Value>,
    /// transformers >= 4.53: one entry per layer; only "full_attention".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    4096
}

/// The keys [`ModelConfig`] reads.
const IMPLEMENTED_KEYS: &[&str] = &[
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "rope_theta",
    "rope_parameters",
    "rope_scaling",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "max_position_embeddings",
    "hidden_act",
    "attention_dropout",
    "partial_rotary_factor",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "layer_types",
];

fn is_off(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

impl ModelConfig {
    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| DartError::Config(format!("config.json: {e}")))?;
        let Value::Object(map) = v else {
            return Err(DartError::Config("config.json: expected a JSON object".into()));
        };
        Self::from_map(map)
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Self> {
        for (k, v) in &map {
            if OFF_ONLY_KEYS.contains(&k.as_str()) {
                if !is_off(v) {
                    return Err(DartError::Config(format!("{k} = {v} is not supported (dart-rl computes full attention without it), expected false")));
                }
            } else if !IMPLEMENTED_KEYS.contains(&k.as_str()) && !INERT_KEYS.contains(&k.as_str()) {
                return Err(DartError::Config(format!(
                    "{k} = {v}: unknown config key; dart-rl refuses what it cannot compute exactly. \
                     Implemented keys: {}. Ignored (no effect on the computation): {}",
                    IMPLEMENTED_KEYS.join(", "),
                    INERT_KEYS.join(", ")
                )));
            }
        }
        map.retain(|k, _| IMPLEMENTED_KEYS.contains(&k.as_str()));
        // serde_path_to_error names the key whose value has the wrong type.
        let cfg: ModelConfig = serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            DartError::Config(format!("config.json: {} = {}", e.path(), e.inner()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn family(&self) -> Family {
        Family::parse(self.model_type.as_deref()).expect("validated")
    }

    /// The RoPE base: `rope_theta`, or `rope_parameters.rope_theta`, or 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(10000.0)
    }

    /// The RoPE frequency scaling (`rope_parameters` of transformers 5, or
    /// `rope_scaling` of earlier versions).
    pub fn rope_scaling(&self) -> RopeScaling {
        self.rope_scaling_checked().expect("validated")
    }

    fn rope_scaling_checked(&self) -> Result<RopeScaling> {
        let parse = |name: &str, v: &Option<Value>| -> Result<RopeScaling> {
            match v {
                None | Some(Value::Null) => Ok(RopeScaling::Default),
                Some(v) => RopeScaling::from_json(v, self.max_position_embeddings).map_err(|e| DartError::Config(format!("{name}: {e}"))),
            }
        };
        let a = parse("rope_parameters", &self.rope_parameters)?;
        let b = parse("rope_scaling", &self.rope_scaling)?;
        match (self.rope_parameters.is_some(), self.rope_scaling.is_some()) {
            (true, true) if a != b => Err(DartError::Config(format!(
                "rope_parameters ({a:?}) and rope_scaling ({b:?}) disagree; give one of them"
            ))),
            (true, _) => Ok(a),
            _ => Ok(b),
        }
    }

    /// RoPE's inverse frequencies per rotation pair and the cos/sin factor.
    pub fn rope_inv_freq(&self) -> (Vec<f64>, f64) {
        self.rope_scaling().inv_freq(self.head_dim(), self.rope_theta())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        match (self.head_dim, self.family()) {
            (Some(h), _) => h,
            // Qwen3Config's default, not hidden_size / heads.
            (None, Family::Qwen3) => 128,
            (None, _) => self.hidden_size / self.num_attention_heads.max(1),
        }
    }

    /// q/k/v carry a bias.
    pub fn qkv_bias(&self) -> bool {
        match self.family() {
            Family::Qwen2 => true,
            Family::Llama | Family::Qwen3 => self.attention_bias == Some(true),
        }
    }

    /// o_proj carries a bias.
    pub fn o_bias(&self) -> bool {
        match self.family() {
            Family::Qwen2 => false,
            Family::Llama | Family::Qwen3 => self.attention_bias == Some(true),
        }
    }

    /// gate/up/down carry a bias (Llama's `mlp_bias`).
    pub fn mlp_bias(&self) -> bool {
        self.family() == Family::Llama && self.mlp_bias == Some(true)
    }

    /// RMSNorm over each head of q and k before RoPE (Qwen3).
    pub fn qk_norm(&self) -> bool {
        self.family() == Family::Qwen3
    }

    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: usize| {
            if v == 0 {
                Err(DartError::Config(format!("{name} = 0, expected >= 1")))
            } else {
                Ok(())
            }
        };
        let family = Family::parse(self.model_type.as_deref())?;
        pos("vocab_size", self.vocab_size)?;
        pos("hidden_size", self.hidden_size)?;
        pos("intermediate_size", self.intermediate_size)?;
        pos("num_hidden_layers", self.num_hidden_layers)?;
        pos("num_attention_heads", self.num_attention_heads)?;
        pos("num_key_value_heads", self.kv_heads())?;
        if let Some(act) = &self.hidden_act {
            if act != "silu" && act != "swish" {
                return Err(DartError::Config(format!("hidden_act = {act:?} is not supported, expected \"silu\"")));
            }
        }
        if family == Family::Qwen2 && self.attention_bias == Some(false) {
            return Err(DartError::Config(
                "attention_bias = false with model_type \"qwen2\": transformers' Qwen2 always has q/k/v biases and ignores this key; remove it".into(),
            ));
        }
        if family != Family::Llama && self.mlp_bias == Some(true) {
            return Err(DartError::Config(format!(
                "mlp_bias = true with model_type {:?}: that family has no MLP biases (transformers ignores the key); remove it",
                self.model_type.as_deref().unwrap_or("")
            )));
        }
        if let Some(p) = self.attention_dropout {
            if p != 0.0 {
                return Err(DartError::Config(format!(
                    "attention_dropout = {p} is not supported, expected 0 (dart-rl trains without attention dropout)"
                )));
            }
        }
        if let Some(f) = self.partial_rotary_factor {
            if f != 1.0 {
                return Err(DartError::Config(format!(
                    "partial_rotary_factor = {f} is not supported, expected 1 (RoPE over the whole head)"
                )));
            }
        }
        if self.use_sliding_window == Some(true) {
            return Err(DartError::Config("use_sliding_window = true is not supported, expected false (full attention in every layer)".into()));
        }
        if let Some(lt) = &self.layer_types {
            if let Some((i, t)) = lt.iter().enumerate().find(|(_, t)| t.as_str() != "full_attention") {
                return Err(DartError::Config(format!(
                    "layer_types[{i}] = {t:?} is not supported, expected \"full_attention\" in every layer"
                )));
            }
            if lt.len() != self.num_hidden_layers {
                return Err(DartError::Config(format!(
                    "layer_types has {} entries, expected num_hidden_layers = {}",
                    lt.len(),
                    self.num_hidden_layers
                )));
            }
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(DartError::Config(format!(
                "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                self.num_attention_heads,
                self.kv_heads()
            )));
        }
        let hd = match (self.head_dim, family) {
            (Some(h), _) => h,
            (None, Family::Qwen3) => 128,
            (None, _) => {
                if self.hidden_size % self.num_attention_heads != 0 {
                    return Err(DartError::Config(format!(
                        "hidden_size = {} is not divisible by num_attention_heads = {}",
                        self.hidden_size, self.num_attention_heads
                    )));
                }
                self.hidden_size / self.num_attention_heads
            }
        };
        if hd == 0 || hd % 2 != 0 {
            return Err(DartError::Config(format!("head_dim = {hd}, expected an even number >= 2")));
        }
        if let (Some(t), Some(p)) = (self.rope_theta, self.rope_parameters.as_ref().and_then(|p| p.get("rope_theta")?.as_f64())) {
            if t != p {
                return Err(DartError::Config(format!("rope_theta = {t} and rope_parameters.rope_theta = {p} disagree")));
            }
        }
        self.rope_scaling_checked()?;
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta() > 0.0) {
            return Err(DartError::Config(format!(
                "rms_norm_eps = {} and rope_theta = {} must be > 0",
                self.rms_norm_eps,
                self.rope_theta()
            )));
        }
        Ok(())
    }
}
