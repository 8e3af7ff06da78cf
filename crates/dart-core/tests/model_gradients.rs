//! Property 9 of docs/design.md: the whole model's gradients (every LoRA tensor
//! of every slot, and every base tensor when the base is trained) agree with
//! central finite differences in f64 on tiny random models.
//! Tolerance: |analytic - numeric| <= 1e-6 * max(1, |numeric|), step 1e-5.
mod common;
use common::*;
use dart_core::Engine;

fn loss(e: &mut Engine<f64>, b: &Batch) -> f64 {
    let lp = e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
    lp.iter().zip(&b.dlogp).map(|(a, g)| a * g).sum()
}

/// A tensor of the engine: (slot, index) of an adapter tensor, or (None, index) of a base tensor.
type Which = (Option<usize>, usize);

fn tensor(e: &Engine<f64>, w: Which) -> Vec<f64> {
    match w {
        (Some(slot), t) => e.adapter(slot).unwrap().params()[t].clone(),
        (None, t) => e.weights().fields()[t].clone(),
    }
}

fn set(e: &mut Engine<f64>, w: Which, data: &[f64]) {
    match w {
        (Some(slot), t) => e.set_adapter_param(slot, t, data).unwrap(),
        (None, t) => e.set_base_param(t, data).unwrap(),
    }
}

/// Central difference of the loss in element i of tensor `w`.
fn numeric(e: &mut Engine<f64>, b: &Batch, w: Which, orig: &[f64], i: usize) -> f64 {
    let h = 1e-5;
    let mut t = orig.to_vec();
    t[i] = orig[i] + h;
    set(e, w, &t);
    let lp = loss(e, b);
    t[i] = orig[i] - h;
    set(e, w, &t);
    let lm = loss(e, b);
    set(e, w, orig);
    (lp - lm) / (2.0 * h)
}

fn assert_fd(what: &str, analytic: f64, num: f64) {
    assert!((analytic - num).abs() <= 1e-6 * num.abs().max(1.0), "{what}: analytic {analytic} vs numeric {num}");
}

fn run(tie: bool, model_type: &str) {
    run_config(tiny_config(tie, model_type))
}

fn run_config(cfg: dart_core::ModelConfig) {
    let b = batch();
    let mut e = Engine::<f64>::random(cfg, 3, &opts(2)).unwrap();
    two_adapters(&mut e);
    e.set_train_base(true);
    loss(&mut e, &b);
    e.backward(&b.dlogp).unwrap();
    let mut checked = 0;
    for slot in 0..2 {
        let grads: Vec<Vec<f64>> = e.adapter(slot).unwrap().grads().into_iter().cloned().collect();
        let names = e.adapter(slot).unwrap().names_shapes();
        for (t, g) in grads.iter().enumerate() {
            assert!(g.iter().any(|&x| x != 0.0), "slot {slot} {} got no gradient", names[t].0);
            let orig = tensor(&e, (Some(slot), t));
            for i in 0..g.len() {
                let num = numeric(&mut e, &b, (Some(slot), t), &orig, i);
                assert_fd(&format!("slot {slot} {}[{i}]", names[t].0), g[i], num);
                checked += 1;
            }
        }
    }
    let base: Vec<Vec<f64>> = e.base_grads().unwrap().fields().into_iter().cloned().collect();
    let names = dart_core::weights::Weights::<f64>::names_shapes(e.config());
    for (t, g) in base.iter().enumerate() {
        let orig = tensor(&e, (None, t));
        for i in 0..g.len() {
            let num = numeric(&mut e, &b, (None, t), &orig, i);
            assert_fd(&format!("base {}[{i}]", names[t].0), g[i], num);
            checked += 1;
        }
    }
    assert!(checked > 1000, "checked only {checked} elements");
}

#[test]
fn qwen2_untied_gradients_match_finite_differences() {
    run(false, "qwen2");
}

#[test]
fn llama_tied_gradients_match_finite_differences() {
    run(true, "llama");
}

/// Qwen3 (per-head q/k RMSNorm, with its weights' base gradients; YaRN RoPE)
/// and Llama with MLP biases and llama3 RoPE.
#[test]
fn variant_gradients_match_finite_differences() {
    for (name, cfg) in variant_configs() {
        let names = dart_core::weights::Weights::<f64>::names_shapes(&cfg);
        let has = |s: &str| names.iter().any(|(n, _)| n.contains(s));
        assert!(has("q_norm") || has("mlp.up_proj.bias"), "{name}: the variant's tensors exist");
        run_config(cfg);
    }
}
