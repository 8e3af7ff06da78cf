//! Checkpoints: PEFT adapter folders, optimizer + RNG state and model folders
//! round-trip exactly, so a resumed run is bit-identical to an uninterrupted
//! one on the cpu backend; the lazy update and typed errors hold.
mod common;
use common::*;
use dart_core::checkpoint::{load_adapter, load_model, load_state, save_adapter, save_model, save_state};
use dart_core::io::{write_safetensors, TensorStore};
use dart_core::{AdamW, DartError, Engine, StepOptions};
use std::collections::BTreeMap;

fn step_opts() -> StepOptions {
    StepOptions { adamw: AdamW { lr: 0.05, weight_decay: 0.01, max_grad_norm: 1.0, ..Default::default() }, slots: None }
}

fn train_step(e: &mut Engine<f32>, b: &Batch, k: usize) {
    // Vary the routes per step so both slots move.
    let routes: Vec<i32> = b.routes.iter().map(|&r| if r < 0 { r } else { (r + k as i32) % 2 }).collect();
    e.forward(&b.tokens, &b.seq_lens, &routes).unwrap();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    e.backward(&g).unwrap();
    e.step(&step_opts()).unwrap();
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dart-core-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn resumed_training_is_bit_identical_to_uninterrupted() {
    let b = batch();
    let cfg = tiny_config(false, "qwen2");
    let mut a = Engine::<f32>::random(cfg.clone(), 5, &opts(2)).unwrap();
    two_adapters(&mut a);
    let dir = tmpdir("resume");
    for k in 0..2 {
        train_step(&mut a, &b, k);
    }
    save_adapter(&a, 0, &dir.join("reason"), "random").unwrap();
    save_adapter(&a, 1, &dir.join("tool"), "random").unwrap();
    save_state(&a, &dir).unwrap();
    for k in 2..4 {
        train_step(&mut a, &b, k);
    }

    let mut r = Engine::<f32>::random(cfg, 5, &opts(2)).unwrap();
    assert_eq!(load_adapter(&mut r, &dir.join("reason")).unwrap(), 0);
    assert_eq!(load_adapter(&mut r, &dir.join("tool")).unwrap(), 1);
    load_state(&mut r, &dir).unwrap();
    for k in 2..4 {
        train_step(&mut r, &b, k);
    }
    for slot in 0..2 {
        let (x, y) = (a.adapter(slot).unwrap(), r.adapter(slot).unwrap());
        for (p, q) in x.params().iter().zip(y.params()) {
            assert_eq!(p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), q.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
        assert_eq!(a.optimizer_state(slot).unwrap().step, r.optimizer_state(slot).unwrap().step);
    }
    assert_eq!(a.rng().get_word_pos(), r.rng().get_word_pos());
    // The saved folder is PEFT's layout.
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tool/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 2);
    let st = TensorStore::open_files(&[dir.join("tool/adapter_model.safetensors")]).unwrap();
    assert!(st.contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_and_threads_give_identical_results() {
    let b = batch();
    let run = || {
        let mut e = Engine::<f32>::random(tiny_config(true, "llama"), 9, &opts(2)).unwrap();
        two_adapters(&mut e);
        for k in 0..3 {
            train_step(&mut e, &b, k);
        }
        e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn lazy_update_keeps_an_unrouted_slot_bit_for_bit() {
    let b = batch();
    let mut e = Engine::<f32>::random(tiny_config(false, "qwen2"), 1, &opts(1)).unwrap();
    two_adapters(&mut e);
    train_step(&mut e, &b, 0); // both slots get tokens: moments become non-zero
    let before: Vec<Vec<f32>> = e.adapter(1).unwrap().params().into_iter().cloned().collect();
    let (m, v, t) = { let s = e.optimizer_state(1).unwrap(); (s.m.clone(), s.v.clone(), s.step) };
    let only0: Vec<i32> = b.routes.iter().map(|&r| if r == 1 { 0 } else { r }).collect();
    e.forward(&b.tokens, &b.seq_lens, &only0).unwrap();
    e.backward(&b.dlogp.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap();
    let (reports, _) = e.step(&step_opts()).unwrap();
    assert!(reports[0].updated && !reports[1].updated && reports[1].tokens == 0);
    let after: Vec<Vec<f32>> = e.adapter(1).unwrap().params().into_iter().cloned().collect();
    assert_eq!(before, after);
    let s = e.optimizer_state(1).unwrap();
    assert_eq!((&s.m, &s.v, s.step), (&m, &v, t));
}

#[test]
fn model_folder_round_trips() {
    let dir = tmpdir("model");
    let mut e = Engine::<f32>::random(tiny_config(false, "qwen2"), 4, &opts(1)).unwrap();
    save_model(&e, &dir).unwrap();
    let mut l = load_model::<f32>(&dir, &opts(1)).unwrap();
    let b = batch();
    let base = vec![-1; b.tokens.len()];
    assert_eq!(e.forward(&b.tokens, &b.seq_lens, &base).unwrap(), l.forward(&b.tokens, &b.seq_lens, &base).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_typed_errors_naming_the_value() {
    let b = batch();
    let mut e = Engine::<f32>::random(tiny_config(false, "qwen2"), 4, &opts(1)).unwrap();
    two_adapters(&mut e);
    let err = e.backward(&[0.0; 12]).unwrap_err();
    assert!(matches!(err, DartError::State(_)), "{err}");
    let err = e.forward(&b.tokens, &b.seq_lens, &b.routes[1..]).unwrap_err();
    assert!(matches!(&err, DartError::Shape(m) if m.contains("routes has 11")), "{err}");
    let mut routes = b.routes.clone();
    routes[3] = 2;
    let err = e.forward(&b.tokens, &b.seq_lens, &routes).unwrap_err();
    assert!(matches!(&err, DartError::UnknownSlot(m) if m.contains("routes[3] = 2")), "{err}");
    let mut tokens = b.tokens.clone();
    tokens[0] = 19;
    let err = e.forward(&tokens, &b.seq_lens, &b.routes).unwrap_err();
    assert!(matches!(&err, DartError::InvalidArgument(m) if m.contains("tokens[0] = 19")), "{err}");
    e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
    let mut g = vec![0.0f32; 12];
    g[4] = f32::NAN;
    let err = e.backward(&g).unwrap_err();
    assert!(matches!(err, DartError::NonFinite(_)), "{err}");
    // A model folder missing one tensor, and one with a wrong shape.
    let dir = tmpdir("broken");
    let src = load_model::<f32>(&fixture("model"), &opts(1)).unwrap();
    save_model(&src, &dir).unwrap();
    let st = TensorStore::open_files(&[dir.join("model.safetensors")]).unwrap();
    let keep: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .names()
        .into_iter()
        .filter(|n| n != "model.norm.weight")
        .map(|n| { let (s, d) = st.get_any::<f32>(&n).unwrap(); (n, s, d) })
        .collect();
    drop(st);
    let views: Vec<(String, Vec<usize>, &[f32])> = keep.iter().map(|(n, s, d)| (n.clone(), s.clone(), d.as_slice())).collect();
    write_safetensors(&dir.join("model.safetensors"), &views, BTreeMap::new()).unwrap();
    let err = load_model::<f32>(&dir, &opts(1)).map(|_| ()).unwrap_err();
    assert!(matches!(&err, DartError::MissingTensor(m) if m.contains("model.norm.weight")), "{err}");
    // Restore every tensor, then claim a different intermediate size.
    save_model(&src, &dir).unwrap();
    std::fs::write(dir.join("config.json"), std::fs::read_to_string(fixture("model/config.json")).unwrap().replace("\"intermediate_size\": 48", "\"intermediate_size\": 40")).unwrap();
    let err = load_model::<f32>(&dir, &opts(1)).map(|_| ()).unwrap_err();
    assert!(matches!(&err, DartError::Shape(m) if m.contains("expected [40, 32]")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
