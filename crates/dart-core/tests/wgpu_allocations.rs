//! The wgpu engine creates no device buffer once warm: after one training
//! step (forward, backward, AdamW step) and one decode step, more steps of
//! the same shapes leave `Engine::device_buffers_created` where it was
//! (activations come from the pool, index tensors are rewritten in place,
//! dispatch parameters live in one buffer per context, read-backs reuse
//! staging buffers). Checked with weights and logits unsplit, and with a
//! 256-byte split size (weights in row blocks, the LM head in blocks of rows).
//!
//! Needs an adapter (CI: Mesa lavapipe); without one the test fails unless
//! DART_SKIP_WGPU=1, which skips it with a note.
#![cfg(feature = "wgpu")]
mod common;
use common::*;
use dart_core::generate::{GenPlan, SampleOptions, Session};
use dart_core::backend::wgpu::with_max_binding_bytes;
use dart_core::roles::RoleRules;
use dart_core::{AdamW, BackendKind, Engine, EngineOptions, StepOptions};

fn skip() -> bool {
    let skip = std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1");
    if skip {
        eprintln!("DART_SKIP_WGPU=1: skipping the wgpu allocation test");
    }
    skip
}

/// Buffers created by: a warm-up (2 training steps, a prompt and 2 decode
/// steps), then by 4 more rounds of a training step and 2 decode steps.
fn created_after_warm_up(split: bool) -> (usize, Vec<usize>, usize) {
    let o = EngineOptions { threads: 2, seed: 7, backend: BackendKind::Wgpu };
    let mut e = Engine::<f32>::random(tiny_config(false, "qwen2"), 3, &o)
        .unwrap_or_else(|err| panic!("wgpu engine: {err} (set DART_SKIP_WGPU=1 to skip)"));
    two_adapters(&mut e);
    e.set_train_base(true);
    let b = batch();
    let g: Vec<f32> = b.dlogp.iter().map(|&x| x as f32).collect();
    let opts = StepOptions { adamw: AdamW { lr: 0.01, ..Default::default() }, slots: None };
    let train = |e: &mut Engine<f32>| {
        e.forward(&b.tokens, &b.seq_lens, &b.routes).unwrap();
        e.backward(&g).unwrap();
        e.step(&opts).unwrap();
    };
    // Every role routes to slot 0, so each decode step has the same row
    // groups; no stop condition, so each call decodes one row per sequence.
    let rules = RoleRules::new(vec![5], vec![6]).unwrap();
    let mut s = Session::new(&e, GenPlan::single([0, 0, 0, 0]), rules, 1).unwrap();
    for p in [&[1, 2, 3][..], &[4, 4, 1], &[2, 7, 9]] {
        s.add_sequence(&e, p).unwrap();
    }
    let sample = SampleOptions { max_new_tokens: 1, pause_on_tool_call: false, ..Default::default() };
    let mut decode = |e: &Engine<f32>| {
        for g in s.generate(e, &sample).unwrap() {
            assert_eq!(g.tokens.len(), 1);
        }
    };
    train(&mut e);
    decode(&e); // the prompts, then one row per sequence
    decode(&e);
    train(&mut e);
    decode(&e);
    let warm = e.device_buffers_created().expect("a wgpu engine counts its buffers");
    let mut after = Vec::new();
    for _ in 0..4 {
        train(&mut e);
        decode(&e);
        decode(&e);
        after.push(e.device_buffers_created().unwrap());
    }
    if split {
        assert!(e.base_parts()[0] > 1, "the embedding is split");
    }
    (warm, after, e.lm_head_rows_per_block())
}

#[test]
fn warm_training_and_decode_steps_create_no_device_buffer() {
    if skip() {
        return;
    }
    for split in [false, true] {
        let (warm, after, rows) = if split { with_max_binding_bytes(256, || created_after_warm_up(true)) } else { created_after_warm_up(false) };
        // 12 tokens: one LM head block unsplit, 4 blocks of 3 rows at 256 bytes.
        assert_eq!(rows < 12, split, "split {split}: {rows} rows per LM head block");
        assert!(warm > 0);
        assert!(after.iter().all(|&n| n == warm), "split {split}: buffers created {warm} after warm-up, then {after:?}");
    }
}
