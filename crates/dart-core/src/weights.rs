//! The base model's parameters with their Hugging Face names and shapes.
//! One fixed order (`names_shapes` / `fields` / `fields_mut`) serves loading,
//! saving, gradients and the optimizer.
use crate::config::ModelConfig;
use crate::float::Float;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// The seven projections LoRA can target, in PEFT's module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Q = 0,
    K = 1,
    V = 2,
    O = 3,
    Gate = 4,
    Up = 5,
    Down = 6,
}

pub const PROJS: [Proj; 7] = [Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down];
pub const PROJ_NAMES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl Proj {
    pub fn name(self) -> &'static str {
        PROJ_NAMES[self as usize]
    }
    pub fn from_name(s: &str) -> Option<Proj> {
        PROJ_NAMES.iter().position(|&n| n == s).map(|i| PROJS[i])
    }
    /// "self_attn" or "mlp": the parent module in HF/PEFT names.
    pub fn module(self) -> &'static str {
        if (self as usize) < 4 {
            "self_attn"
        } else {
            "mlp"
        }
    }
    /// (in, out) features.
    pub fn dims(self, c: &ModelConfig) -> (usize, usize) {
        let (d, hd) = (c.hidden_size, c.head_dim());
        match self {
            Proj::Q => (d, c.num_attention_heads * hd),
            Proj::K | Proj::V => (d, c.kv_heads() * hd),
            Proj::O => (c.num_attention_heads * hd, d),
            Proj::Gate | Proj::Up => (d, c.intermediate_size),
            Proj::Down => (c.intermediate_size, d),
        }
    }
    pub fn has_bias(self, c: &ModelConfig) -> bool {
        match self {
            Proj::Q | Proj::K | Proj::V => c.qkv_bias(),
            Proj::O => c.o_bias(),
            Proj::Gate | Proj::Up | Proj::Down => c.mlp_bias(),
        }
    }
}

/// A dense layer's tensors in some storage `S` (a host `Vec<T>` or a
/// backend buffer).
#[derive(Clone)]
pub struct Linear<S> {
    pub w: S,
    pub b: Option<S>,
}

#[derive(Clone)]
pub struct Layer<S> {
    pub input_norm: S,
    pub post_norm: S,
    /// Qwen3's per-head RMSNorm weights of q and k ([head_dim] each).
    pub qk_norm: Option<(S, S)>,
    pub proj: Vec<Linear<S>>,
}

/// The base model's tensors in storage `S`; `Weights<T>` is the host form.
#[derive(Clone)]
pub struct WeightsOf<S> {
    pub embed: S,
    pub layers: Vec<Layer<S>>,
    pub norm: S,
    /// None when the embeddings are tied.
    pub lm_head: Option<S>,
}

/// The base model on the host.
pub type Weights<T> = WeightsOf<Vec<T>>;

/// HF names and shapes of the base tensors, in the order of `fields`.
pub fn weight_names_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let d = c.hidden_size;
        let mut v = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, d])];
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            v.push((format!("{p}.input_layernorm.weight"), vec![d]));
            v.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
            if c.qk_norm() {
                v.push((format!("{p}.self_attn.q_norm.weight"), vec![c.head_dim()]));
                v.push((format!("{p}.self_attn.k_norm.weight"), vec![c.head_dim()]));
            }
            for pr in PROJS {
                let (i, o) = pr.dims(c);
                v.push((format!("{p}.{}.{}.weight", pr.module(), pr.name()), vec![o, i]));
                if pr.has_bias(c) {
                    v.push((format!("{p}.{}.{}.bias", pr.module(), pr.name()), vec![o]));
                }
            }
        }
        v.push(("model.norm.weight".to_string(), vec![d]));
        if !c.tie_word_embeddings {
            v.push(("lm_head.weight".to_string(), vec![c.vocab_size, d]));
        }
        v
}

impl<S> WeightsOf<S> {
    /// HF names and shapes, in the order of `fields`.
    pub fn names_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        weight_names_shapes(c)
    }

    /// Builds weights from a function of (name, shape), in `names_shapes` order.
    pub fn build(c: &ModelConfig, mut f: impl FnMut(&str, &[usize]) -> crate::Result<S>) -> crate::Result<Self> {
        let ns = weight_names_shapes(c);
        let mut it = ns.iter();
        let mut next = || {
            let (n, s) = it.next().expect("names_shapes covers every field");
            f(n, s)
        };
        let embed = next()?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for _ in 0..c.num_hidden_layers {
            let input_norm = next()?;
            let post_norm = next()?;
            let qk_norm = if c.qk_norm() { Some((next()?, next()?)) } else { None };
            let mut proj = Vec::with_capacity(7);
            for pr in PROJS {
                let w = next()?;
                let b = if pr.has_bias(c) { Some(next()?) } else { None };
                proj.push(Linear { w, b });
            }
            layers.push(Layer { input_norm, post_norm, qk_norm, proj });
        }
        let norm = next()?;
        let lm_head = if c.tie_word_embeddings { None } else { Some(next()?) };
        Ok(WeightsOf { embed, layers, norm, lm_head })
    }

    /// The same tensors in another storage (upload, download, convert).
    pub fn map<S2>(&self, mut f: impl FnMut(&S) -> S2) -> WeightsOf<S2> {
        WeightsOf {
            embed: f(&self.embed),
            layers: self
                .layers
                .iter()
                .map(|l| Layer {
                    input_norm: f(&l.input_norm),
                    post_norm: f(&l.post_norm),
                    qk_norm: l.qk_norm.as_ref().map(|(q, k)| (f(q), f(k))),
                    proj: l.proj.iter().map(|p| Linear { w: f(&p.w), b: p.b.as_ref().map(&mut f) }).collect(),
                })
                .collect(),
            norm: f(&self.norm),
            lm_head: self.lm_head.as_ref().map(&mut f),
        }
    }

    pub fn fields(&self) -> Vec<&S> {
        let mut v = vec![&self.embed];
        for l in &self.layers {
            v.push(&l.input_norm);
            v.push(&l.post_norm);
            if let Some((q, k)) = &l.qk_norm {
                v.push(q);
                v.push(k);
            }
            for p in &l.proj {
                v.push(&p.w);
                if let Some(b) = &p.b {
                    v.push(b);
                }
            }
        }
        v.push(&self.norm);
        if let Some(h) = &self.lm_head {
            v.push(h);
        }
        v
    }

    pub fn fields_mut(&mut self) -> Vec<&mut S> {
        let mut v = vec![&mut self.embed];
        for l in &mut self.layers {
            v.push(&mut l.input_norm);
            v.push(&mut l.post_norm);
            if let Some((q, k)) = &mut l.qk_norm {
                v.push(q);
                v.push(k);
            }
            for p in &mut l.proj {
                v.push(&mut p.w);
                if let Some(b) = &mut p.b {
                    v.push(b);
                }
            }
        }
        v.push(&mut self.norm);
        if let Some(h) = &mut self.lm_head {
            v.push(h);
        }
        v
    }

    /// The LM head: its own matrix, or the embeddings when tied.
    pub fn head(&self) -> &S {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}

impl<T: Float> WeightsOf<Vec<T>> {
    pub fn zeros(c: &ModelConfig) -> Self {
        Self::build(c, |_, s| Ok(vec![T::zero(); s.iter().product()])).expect("zeros cannot fail")
    }

    /// Seeded random init: linear weights N(0, 1/sqrt(in)), biases N(0, 0.02),
    /// embeddings N(0, 1/sqrt(d)), norms 1.
    pub fn random(c: &ModelConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self::build(c, |name, shape| {
            let n: usize = shape.iter().product();
            if name.ends_with("norm.weight") {
                return Ok(vec![T::one(); n]);
            }
            let std = if name.ends_with(".bias") {
                0.02
            } else if name.contains("embed_tokens") || name.starts_with("lm_head") {
                1.0 / (c.hidden_size as f64).sqrt()
            } else {
                1.0 / (shape[1] as f64).sqrt()
            };
            let dist = Normal::new(0.0, std).expect("std > 0");
            Ok((0..n).map(|_| T::from_f64(dist.sample(&mut rng))).collect())
        })
        .expect("random cannot fail")
    }
}
