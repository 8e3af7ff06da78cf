//! The model configuration, read from a Hugging Face `config.json`
//! (Llama / Qwen2 family) and validated before anything is allocated.
use crate::error::{DartError, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers 5 writes {rope_theta, rope_type} here.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's name for q/k/v/o bias; Qwen2 always has q/k/v bias.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    4096
}

impl ModelConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_str(text)
            .map_err(|e| DartError::Config(format!("config.json: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(10000.0)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// q/k/v carry a bias (Qwen2 always; Llama when `attention_bias`).
    pub fn qkv_bias(&self) -> bool {
        match self.attention_bias {
            Some(b) => b,
            None => self.model_type.as_deref() == Some("qwen2"),
        }
    }

    /// o_proj carries a bias only in Llama with `attention_bias`.
    pub fn o_bias(&self) -> bool {
        self.model_type.as_deref() != Some("qwen2") && self.attention_bias == Some(true)
    }

    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: usize| {
            if v == 0 {
                Err(DartError::Config(format!("{name} = 0, expected >= 1")))
            } else {
                Ok(())
            }
        };
        pos("vocab_size", self.vocab_size)?;
        pos("hidden_size", self.hidden_size)?;
        pos("intermediate_size", self.intermediate_size)?;
        pos("num_hidden_layers", self.num_hidden_layers)?;
        pos("num_attention_heads", self.num_attention_heads)?;
        pos("num_key_value_heads", self.kv_heads())?;
        if let Some(mt) = &self.model_type {
            if mt != "llama" && mt != "qwen2" {
                return Err(DartError::Config(format!(
                    "model_type = {mt:?}, expected \"llama\" or \"qwen2\""
                )));
            }
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(DartError::Config(format!("hidden_act = {act:?}, expected \"silu\"")));
            }
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(DartError::Config(format!(
                "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                self.num_attention_heads,
                self.kv_heads()
            )));
        }
        let hd = self.head_dim();
        if hd == 0 || hd % 2 != 0 {
            return Err(DartError::Config(format!("head_dim = {hd}, expected an even number >= 2")));
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(DartError::Config(format!(
                "hidden_size = {} is not divisible by num_attention_heads = {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        for rp in [&self.rope_parameters, &self.rope_scaling].into_iter().flatten() {
            let kind = rp.get("rope_type").or_else(|| rp.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
            if kind != "default" {
                return Err(DartError::Config(format!("rope_type = {kind:?}, expected \"default\" (scaled RoPE is not supported)")));
            }
        }
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta() > 0.0) {
            return Err(DartError::Config("rms_norm_eps and rope_theta must be > 0".into()));
        }
        Ok(())
    }
}
