//! Property 9 of DESIGN.md: the whole model's gradients (every LoRA tensor
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

fn numeric(e: &mut Engine<f64>, b: &Batch, get: &dyn Fn(&mut Engine<f64>) -> &mut f64) -> f64 {
    let h = 1e-5;
    let x = *get(e);
    *get(e) = x + h;
    let lp = loss(e, b);
    *get(e) = x - h;
    let lm = loss(e, b);
    *get(e) = x;
    (lp - lm) / (2.0 * h)
}

fn assert_fd(what: &str, analytic: f64, num: f64) {
    assert!((analytic - num).abs() <= 1e-6 * num.abs().max(1.0), "{what}: analytic {analytic} vs numeric {num}");
}

fn run(tie: bool, model_type: &str) {
    let b = batch();
    let mut e = Engine::<f64>::random(tiny_config(tie, model_type), 3, &opts(2)).unwrap();
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
            for i in 0..g.len() {
                let num = numeric(&mut e, &b, &|e| &mut e.adapter_mut(slot).unwrap().params_and_grads_mut().into_iter().nth(t).unwrap().0[i]);
                assert_fd(&format!("slot {slot} {}[{i}]", names[t].0), g[i], num);
                checked += 1;
            }
        }
    }
    let base: Vec<Vec<f64>> = e.base_grads().unwrap().fields().into_iter().cloned().collect();
    let names = dart_core::weights::Weights::<f64>::names_shapes(e.config());
    for (t, g) in base.iter().enumerate() {
        for i in 0..g.len() {
            let num = numeric(&mut e, &b, &|e| &mut e.weights_mut().fields_mut().into_iter().nth(t).unwrap()[i]);
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
