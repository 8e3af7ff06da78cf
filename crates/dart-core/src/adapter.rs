//! LoRA adapter slots: each has its own rank, alpha and target projections,
//! its own parameters and gradients, stored apart from every other slot.
use crate::config::ModelConfig;
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::weights::{Proj, PROJS, PROJ_NAMES};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSpec {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<Proj>,
    pub seed: u64,
    /// Std of the initial B (0 = PEFT's default B = 0).
    pub b_init_std: f64,
    /// rsLoRA scaling alpha / sqrt(rank) instead of alpha / rank.
    pub use_rslora: bool,
}

impl AdapterSpec {
    pub fn new(rank: usize, alpha: f64, targets: &[&str], seed: u64) -> Result<Self> {
        let targets = parse_targets(targets)?;
        let s = AdapterSpec { rank, alpha, targets, seed, b_init_std: 0.0, use_rslora: false };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(DartError::InvalidArgument("adapter rank = 0, expected >= 1".into()));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(DartError::InvalidArgument(format!("adapter alpha = {}, expected a finite number > 0", self.alpha)));
        }
        if self.targets.is_empty() {
            return Err(DartError::InvalidArgument(format!("adapter targets are empty, expected some of {PROJ_NAMES:?}")));
        }
        if !(self.b_init_std >= 0.0) {
            return Err(DartError::InvalidArgument(format!("bInitStd = {}, expected >= 0", self.b_init_std)));
        }
        Ok(())
    }

    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

pub fn parse_targets(names: &[&str]) -> Result<Vec<Proj>> {
    let mut out = Vec::new();
    for n in names {
        let p = Proj::from_name(n).ok_or_else(|| {
            DartError::InvalidArgument(format!("unknown LoRA target {n:?}, expected one of {PROJ_NAMES:?}"))
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// One adapted projection of one layer: A [rank, in], B [out, rank] and
/// their gradient accumulators.
/// Storage `S`: a host `Vec<T>` (`LoraPair<T>`) or a backend buffer.
#[derive(Clone)]
pub struct LoraPairOf<S> {
    pub layer: usize,
    pub proj: Proj,
    pub n_in: usize,
    pub n_out: usize,
    pub a: S,
    pub b: S,
    pub ga: S,
    pub gb: S,
}

/// An adapter slot's tensors in storage `S`; `Adapter<T>` is the host form.
#[derive(Clone)]
pub struct AdapterOf<S> {
    pub spec: AdapterSpec,
    pub pairs: Vec<LoraPairOf<S>>,
    /// pairs index by layer * 7 + proj.
    index: Vec<Option<usize>>,
}

pub type LoraPair<T> = LoraPairOf<Vec<T>>;
pub type Adapter<T> = AdapterOf<Vec<T>>;

/// PEFT's tensor name for a LoRA matrix ("A" or "B").
pub fn peft_name(layer: usize, proj: Proj, ab: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{}.lora_{ab}.weight", proj.module(), proj.name())
}

impl<T: Float> AdapterOf<Vec<T>> {
    /// A ~ N(0, 0.02) and B = 0 (or N(0, b_init_std)), seeded by the spec.
    pub fn new(cfg: &ModelConfig, spec: AdapterSpec) -> Result<Self> {
        spec.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let na = Normal::new(0.0, 0.02).expect("valid std");
        let nb = Normal::new(0.0, spec.b_init_std.max(f64::MIN_POSITIVE)).expect("valid std");
        let mut pairs = Vec::new();
        let mut index = vec![None; cfg.num_hidden_layers * 7];
        for layer in 0..cfg.num_hidden_layers {
            for &proj in &spec.targets {
                let (n_in, n_out) = proj.dims(cfg);
                let r = spec.rank;
                let a = (0..r * n_in).map(|_| T::from_f64(na.sample(&mut rng))).collect();
                let b = if spec.b_init_std > 0.0 {
                    (0..n_out * r).map(|_| T::from_f64(nb.sample(&mut rng))).collect()
                } else {
                    vec![T::zero(); n_out * r]
                };
                index[layer * 7 + proj as usize] = Some(pairs.len());
                pairs.push(LoraPairOf { layer, proj, n_in, n_out, a, b, ga: vec![T::zero(); r * n_in], gb: vec![T::zero(); n_out * r] });
            }
        }
        Ok(AdapterOf { spec, pairs, index })
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.pairs {
            p.ga.iter_mut().for_each(|x| *x = T::zero());
            p.gb.iter_mut().for_each(|x| *x = T::zero());
        }
    }
}

impl<S> AdapterOf<S> {
    /// The same adapter in another storage (upload, download, convert).
    pub fn map<S2>(&self, mut f: impl FnMut(&S) -> S2) -> AdapterOf<S2> {
        AdapterOf {
            spec: self.spec.clone(),
            pairs: self
                .pairs
                .iter()
                .map(|p| LoraPairOf { layer: p.layer, proj: p.proj, n_in: p.n_in, n_out: p.n_out, a: f(&p.a), b: f(&p.b), ga: f(&p.ga), gb: f(&p.gb) })
                .collect(),
            index: self.index.clone(),
        }
    }

    pub fn pair(&self, layer: usize, proj: Proj) -> Option<&LoraPairOf<S>> {
        self.index[layer * 7 + proj as usize].map(|i| &self.pairs[i])
    }

    pub fn pair_mut(&mut self, layer: usize, proj: Proj) -> Option<&mut LoraPairOf<S>> {
        self.index[layer * 7 + proj as usize].map(move |i| &mut self.pairs[i])
    }

    /// (PEFT name, shape) of every tensor, A then B per pair.
    pub fn names_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let r = self.spec.rank;
        self.pairs
            .iter()
            .flat_map(|p| {
                [(peft_name(p.layer, p.proj, "A"), vec![r, p.n_in]), (peft_name(p.layer, p.proj, "B"), vec![p.n_out, r])]
            })
            .collect()
    }

    pub fn params(&self) -> Vec<&S> {
        self.pairs.iter().flat_map(|p| [&p.a, &p.b]).collect()
    }

    pub fn params_and_grads_mut(&mut self) -> Vec<(&mut S, &mut S)> {
        self.pairs.iter_mut().flat_map(|p| [(&mut p.a, &mut p.ga), (&mut p.b, &mut p.gb)]).collect()
    }

    pub fn grads(&self) -> Vec<&S> {
        self.pairs.iter().flat_map(|p| [&p.ga, &p.gb]).collect()
    }

    /// Index of a named tensor (PEFT name) in `params` order.
    pub fn tensor_index(&self, name: &str) -> Result<usize> {
        let names: Vec<String> = self.names_shapes().into_iter().map(|(n, _)| n).collect();
        names.iter().position(|n| n == name).ok_or_else(|| {
            DartError::MissingTensor(format!(
                "{name:?} is not a tensor of this adapter (targets {:?}, e.g. {:?})",
                self.spec.targets.iter().map(|p| p.name()).collect::<Vec<_>>(),
                names.first()
            ))
        })
    }

    /// Mutable access to one named tensor (PEFT name).
    pub fn tensor_mut(&mut self, name: &str) -> Result<&mut S> {
        let i = self.tensor_index(name)?;
        let p = &mut self.pairs[i / 2];
        Ok(if i % 2 == 0 { &mut p.a } else { &mut p.b })
    }
}

pub fn all_targets() -> Vec<Proj> {
    PROJS.to_vec()
}
