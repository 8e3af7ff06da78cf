//! Rotary position embedding, Hugging Face "rotate_half" layout: dimension i
//! pairs with i + head_dim/2. Backward applies the inverse (transposed) rotation.
use crate::float::Float;
use rayon::prelude::*;

/// How RoPE's inverse frequencies are scaled, as transformers'
/// `ROPE_INIT_FUNCTIONS` compute them (`rope_type` in `rope_parameters` /
/// `rope_scaling`). Types whose frequencies depend on the current sequence
/// length (dynamic, longrope) are refused, not approximated.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// inv_freq / factor.
    Linear { factor: f64 },
    /// Llama 3.1+: low frequencies divided by `factor`, high kept, a smooth
    /// ramp in between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
    /// YaRN: interpolation/extrapolation blended by a linear ramp over the
    /// dimensions, cos/sin multiplied by `attention_factor`.
    Yarn { factor: f64, attention_factor: f64, beta_fast: f64, beta_slow: f64, original_max_position_embeddings: f64, truncate: bool },
}

const ROPE_TYPES: &str = "\"default\", \"linear\", \"llama3\" or \"yarn\"";

impl RopeScaling {
    /// From a `rope_parameters` / `rope_scaling` object; `max_pos` is the
    /// config's `max_position_embeddings` (transformers' fallback for
    /// `original_max_position_embeddings`).
    pub fn from_json(v: &serde_json::Value, max_pos: usize) -> Result<RopeScaling, String> {
        let obj = v.as_object().ok_or_else(|| format!("expected an object, got {v}"))?;
        let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
        let num = |k: &str| obj.get(k).filter(|x| !x.is_null()).map(|x| x.as_f64().ok_or_else(|| format!("{k} = {x}, expected a number")));
        let need = |k: &str| num(k).unwrap_or_else(|| Err(format!("rope_type {kind:?} needs {k}")));
        let orig = || num("original_max_position_embeddings").unwrap_or(Ok(max_pos as f64));
        let known: &[&str] = match kind {
            "default" => &[],
            "linear" => &["factor"],
            "llama3" => &["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
            "yarn" => &["factor", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "original_max_position_embeddings", "truncate"],
            "dynamic" | "longrope" => {
                return Err(format!(
                    "rope_type = {kind:?} is not supported (its frequencies change with the sequence length), expected {ROPE_TYPES}"
                ))
            }
            other => return Err(format!("rope_type = {other:?} is not supported, expected {ROPE_TYPES}")),
        };
        for k in obj.keys() {
            if !["rope_type", "type", "rope_theta"].contains(&k.as_str()) && !known.contains(&k.as_str()) {
                if k == "partial_rotary_factor" && num(k) == Some(Ok(1.0)) {
                    continue;
                }
                return Err(format!("{k} is not a parameter of rope_type {kind:?} that dart-rl implements (allowed: {})", known.join(", ")));
            }
        }
        let positive = |k: &str, x: f64| if x > 0.0 { Ok(x) } else { Err(format!("{k} = {x}, expected > 0")) };
        Ok(match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: positive("factor", need("factor")?)? },
            "llama3" => {
                let (low, high) = (positive("low_freq_factor", need("low_freq_factor")?)?, positive("high_freq_factor", need("high_freq_factor")?)?);
                if high <= low {
                    return Err(format!("high_freq_factor = {high} must be > low_freq_factor = {low}"));
                }
                RopeScaling::Llama3 {
                    factor: positive("factor", need("factor")?)?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: positive("original_max_position_embeddings", orig()?)?,
                }
            }
            _ => {
                let original = positive("original_max_position_embeddings", orig()?)?;
                let factor = match num("factor") {
                    Some(f) => positive("factor", f?)?,
                    None => max_pos as f64 / original,
                };
                let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
                let attention_factor = match num("attention_factor") {
                    Some(a) => a?,
                    None => match (num("mscale").transpose()?, num("mscale_all_dim").transpose()?) {
                        (Some(m), Some(ma)) if m != 0.0 && ma != 0.0 => mscale(factor, m) / mscale(factor, ma),
                        _ => mscale(factor, 1.0),
                    },
                };
                // transformers: `get("beta_fast") or 32`, so 0 also means the default.
                let or = |k: &str, d: f64| -> Result<f64, String> { Ok(num(k).transpose()?.filter(|&x| x != 0.0).unwrap_or(d)) };
                let truncate = match obj.get("truncate") {
                    None | Some(serde_json::Value::Null) => true,
                    Some(t) => t.as_bool().ok_or_else(|| format!("truncate = {t}, expected true or false"))?,
                };
                RopeScaling::Yarn {
                    factor,
                    attention_factor,
                    beta_fast: or("beta_fast", 32.0)?,
                    beta_slow: or("beta_slow", 1.0)?,
                    original_max_position_embeddings: original,
                    truncate,
                }
            }
        })
    }

    /// The inverse frequency of each of the head_dim/2 rotation pairs, and
    /// the factor cos and sin are multiplied by.
    pub fn inv_freq(&self, head_dim: usize, theta: f64) -> (Vec<f64>, f64) {
        let dim = head_dim as f64;
        let base: Vec<f64> = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / dim)).collect();
        match *self {
            RopeScaling::Default => (base, 1.0),
            RopeScaling::Linear { factor } => (base.iter().map(|f| f / factor).collect(), 1.0),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                let f = base
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wl {
                            f
                        } else if wavelen > low_wl {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (f, 1.0)
            }
            RopeScaling::Yarn { factor, attention_factor, beta_fast, beta_slow, original_max_position_embeddings: orig, truncate } => {
                let corr = |rot: f64| (dim * (orig / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * theta.ln());
                let (mut low, mut high) = (corr(beta_fast), corr(beta_slow));
                if truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                let f = base
                    .iter()
                    .enumerate()
                    .map(|(i, &extra)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        (extra / factor) * (1.0 - extrapolation) + extra * extrapolation
                    })
                    .collect();
                (f, attention_factor)
            }
        }
    }
}

/// cos/sin tables [positions, head_dim/2] for angle = pos * inv_freq[i],
/// both multiplied by `scale` (YaRN's attention factor; 1 otherwise).
pub fn rope_tables<T: Float>(positions: usize, inv_freq: &[f64], scale: f64) -> (Vec<T>, Vec<T>) {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for &f in inv_freq {
            let a = p as f64 * f;
            cos.push(T::from_f64(a.cos() * scale));
            sin.push(T::from_f64(a.sin() * scale));
        }
    }
    (cos, sin)
}

/// Rotates every head of `x` [rows, heads*head_dim] in place; row r is at
/// position `pos[r]`. `inverse` rotates by -angle (the backward pass).
pub fn rope_apply<T: Float>(
    x: &mut [T],
    pos: &[u32],
    heads: usize,
    head_dim: usize,
    cos: &[T],
    sin: &[T],
    inverse: bool,
) {
    let half = head_dim / 2;
    x.par_chunks_mut(heads * head_dim).zip(pos.par_iter()).for_each(|(row, &p)| {
        let c = &cos[p as usize * half..(p as usize + 1) * half];
        let s = &sin[p as usize * half..(p as usize + 1) * half];
        for h in row.chunks_mut(head_dim) {
            for i in 0..half {
                let (a, b) = (h[i], h[i + half]);
                let si = if inverse { -s[i] } else { s[i] };
                h[i] = a * c[i] - b * si;
                h[i + half] = b * c[i] + a * si;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, rand_vec};

    #[test]
    fn rope_backward_matches_finite_differences() {
        let (heads, hd) = (2, 6);
        let pos = [0u32, 3, 1];
        let (inv, _) = RopeScaling::Default.inv_freq(hd, 10000.0);
        let (cos, sin) = rope_tables::<f64>(4, &inv, 1.0);
        let x = rand_vec::<f64>(3 * heads * hd, 1);
        let g = rand_vec::<f64>(3 * heads * hd, 2);
        let loss = |x: &[f64]| {
            let mut y = x.to_vec();
            rope_apply(&mut y, &pos, heads, hd, &cos, &sin, false);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = g.clone();
        rope_apply(&mut dx, &pos, heads, hd, &cos, &sin, true);
        check_grad(&x, &dx, loss);
    }
}
