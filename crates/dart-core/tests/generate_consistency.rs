//! Property 8 of docs/design.md on the cpu backend: the logprobs recorded while
//! generating (KV cache, routes switching by role, tool output inserted)
//! equal `forward`'s logprobs on the same tokens and routes within 1e-5,
//! for dart, joint, two-agent and hybrid plans. Seeded generation is
//! reproducible.
mod common;
use common::*;
use dart_core::generate::{GenPlan, SampleOptions, Session, StopReason};
use dart_core::roles::{Role, RoleRules};
use dart_core::Engine;

fn engine(seed: u64) -> Engine<f32> {
    let mut cfg = tiny_config(false, "qwen2");
    cfg.vocab_size = 8; // small vocabulary: the one-token tags come up often
    let mut e = Engine::<f32>::random(cfg, seed, &opts(2)).unwrap();
    two_adapters(&mut e);
    e
}

/// A model wide enough for the cpu backend's vectorized decode paths
/// (few-row GEMM at depth >= 64, 512-bit attention at head size 64).
fn wide_engine(seed: u64) -> Engine<f32> {
    let mut cfg = tiny_config(true, "llama");
    cfg.vocab_size = 8;
    cfg.hidden_size = 128;
    cfg.intermediate_size = 192;
    cfg.num_attention_heads = 2;
    cfg.num_key_value_heads = Some(1);
    let mut e = Engine::<f32>::random(cfg, seed, &opts(2)).unwrap();
    two_adapters(&mut e);
    e
}

const PROMPTS: [&[i32]; 3] = [&[1, 2, 3], &[4], &[2, 2, 7, 1]];

/// Rolls out 3 sequences with tool calls; returns the session.
fn rollout(e: &Engine<f32>, plan: GenPlan, seed: u64) -> Session<f32> {
    rollout_from(e, plan, seed, &PROMPTS)
}

fn rollout_from(e: &Engine<f32>, plan: GenPlan, seed: u64, prompts: &[&[i32]]) -> Session<f32> {
    let rules = RoleRules::new(vec![5], vec![6]).unwrap();
    let mut s = Session::new(e, plan, rules, seed).unwrap();
    for p in prompts {
        s.add_sequence(e, p).unwrap();
    }
    let opts = SampleOptions { max_new_tokens: 12, temperature: 1.5, ..Default::default() };
    for turn in 0..3 {
        let out = s.generate(e, &opts).unwrap();
        for g in out {
            if g.stop == StopReason::ToolCall {
                s.extend(e, g.seq, &[turn as i32 + 1, 0, 3], Role::Observation).unwrap();
            }
        }
    }
    s
}

fn check(plan: GenPlan, two_pass: bool) {
    check_with(plan, two_pass, engine, &PROMPTS, 1e-5);
}

/// Generation vs forward within `tol * max(1, |logp|)`.
fn check_with(plan: GenPlan, two_pass: bool, make: fn(u64) -> Engine<f32>, prompts: &[&[i32]], tol: f32) {
    let mut calls = 0;
    for seed in 0..6 {
        let mut e = make(seed);
        let s = rollout_from(&e, plan.clone(), seed, prompts);
        for q in &s.seqs {
            let n = q.tokens.len();
            calls += q.roles.iter().filter(|&&r| r == Role::Observation).count();
            let passes: Vec<(Vec<i32>, Vec<Role>)> = if two_pass {
                vec![(vec![plan.agents[0][0]; n], vec![Role::Reasoning]), (vec![plan.agents[1][0]; n], vec![Role::Action])]
            } else {
                vec![(q.routes.clone(), vec![Role::Reasoning, Role::Action])]
            };
            for (routes, roles) in passes {
                let lp = e.forward(&q.tokens, &[n as i32], &routes).unwrap();
                for t in 0..n {
                    if roles.contains(&q.roles[t]) {
                        assert!((lp[t] - q.logprobs[t]).abs() <= tol * lp[t].abs().max(1.0), "seed {seed} token {t} ({:?}): forward {} vs generate {}", q.roles[t], lp[t], q.logprobs[t]);
                    }
                }
            }
        }
    }
    assert!(calls > 0, "no tool call happened: the test would not cover the switch");
}

#[test]
fn dart_generation_matches_forward() {
    check(GenPlan::single([0, 0, 1, 0]), false);
}

#[test]
fn joint_generation_matches_forward() {
    check(GenPlan::single([0, 0, 0, 0]), false);
}

#[test]
fn two_agent_generation_matches_forward() {
    check(GenPlan::two_agents(0, 1), true);
}

#[test]
fn hybrid_generation_matches_forward() {
    // H_Tool: the base writes reasoning, the tool adapter writes tool calls.
    check(GenPlan::two_agents(-1, 1), true);
}

/// The vectorized decode paths against forward, which for the 300-token
/// prompt runs its projections through `gemm` (more than 256 rows).
#[test]
fn wide_model_generation_matches_forward() {
    let long: Vec<i32> = (0..300).map(|i| (i * 7 % 5) as i32).collect();
    let prompts: [&[i32]; 3] = [&long, &[4], &[2, 2, 7, 1]];
    check_with(GenPlan::single([0, 0, 1, 0]), false, wide_engine, &prompts, 1e-5);
    check_with(GenPlan::two_agents(0, 1), true, wide_engine, &prompts, 1e-5);
}

#[test]
fn seeded_generation_is_reproducible_and_roles_follow_the_tags() {
    let e = engine(3);
    let a = rollout(&e, GenPlan::single([0, 0, 1, 0]), 42);
    let b = rollout(&e, GenPlan::single([0, 0, 1, 0]), 42);
    for (x, y) in a.seqs.iter().zip(&b.seqs) {
        assert_eq!(x.tokens, y.tokens);
        assert_eq!(x.logprobs, y.logprobs);
        // Re-labelling the trajectory from who wrote each token gives the same roles.
        let src: Vec<_> = x.roles.iter().map(|r| match r {
            Role::Prompt => dart_core::roles::Source::Prompt,
            Role::Observation => dart_core::roles::Source::Tool,
            _ => dart_core::roles::Source::Model,
        }).collect();
        let rules = RoleRules::new(vec![5], vec![6]).unwrap();
        assert_eq!(dart_core::roles::assign_roles(&x.tokens, &src, &rules).unwrap(), x.roles);
        // Routes follow roles under the dart plan.
        for (r, &route) in x.roles.iter().zip(&x.routes) {
            assert_eq!(route, if *r == Role::Action { 1 } else { 0 });
        }
    }
}
