//! Where a forward+backward goes: the engine's public ops timed one by one at
//! a model's shapes (same pool and thread count), scaled by how often one
//! iteration calls them. An estimate (no LoRA, no buffer traffic between
//! ops), to compare with the measured forward/backward medians.
use dart_bench::common::{median, round, Rng};
use dart_core::ops::attention::{attention_backward, attention_forward, AttnShape};
use dart_core::ops::logprob::{logprob_backward, logprob_forward};
use dart_core::ops::matmul::matmul;
use dart_core::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use dart_core::ops::rope::{rope_apply, rope_tables};
use dart_core::ops::swiglu::{swiglu_backward, swiglu_forward};
use dart_core::ModelConfig;
use serde_json::{json, Value};
use std::time::Instant;

fn rv(len: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| (r.below(2001) as f32 - 1000.0) * 1e-3 * amp).collect()
}

fn time_it(pool: &rayon::ThreadPool, reps: usize, mut f: impl FnMut() + Send) -> f64 {
    pool.install(&mut f);
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        pool.install(&mut f);
        ts.push(t.elapsed().as_secs_f64());
    }
    median(&ts)
}

/// Prints and returns the breakdown for one model config and batch.
pub fn breakdown(cfg: &ModelConfig, seqs: usize, seq_len: usize, threads: usize, reps: usize) -> Value {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let n = seqs * seq_len;
    let (d, f, v, layers) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers);
    let hd = cfg.head_dim();
    let sh = AttnShape { heads: cfg.num_attention_heads, kv_heads: cfg.kv_heads(), head_dim: hd };
    let (qw, kw) = (sh.heads * hd, sh.kv_heads * hd);
    let projs = [(d, qw), (d, kw), (d, kw), (qw, d), (d, f), (d, f), (f, d)];
    let seq_list: Vec<(usize, usize)> = (0..seqs).map(|s| (s * seq_len, seq_len)).collect();
    let pos: Vec<u32> = (0..n).map(|p| (p % seq_len) as u32).collect();
    let (inv_freq, scale) = cfg.rope_inv_freq();
    let (cos, sin) = rope_tables::<f32>(seq_len.next_power_of_two().max(64), &inv_freq, scale);
    let mut rows: Vec<(&str, f64, f64)> = Vec::new(); // (op, fwd s/iter, bwd s/iter)

    // Base projections (forward y = x W^T; backward dx = dy W).
    let (mut lf, mut lb) = (0.0, 0.0);
    for (i, &(ni, no)) in projs.iter().enumerate() {
        let x = rv(n * ni, 10 + i as u64, 1.0);
        let w = rv(no * ni, 20 + i as u64, 0.05);
        let dy = rv(n * no, 30 + i as u64, 1.0);
        let mut y = vec![0f32; n * no];
        let mut dx = vec![0f32; n * ni];
        lf += time_it(&pool, reps, || matmul(&mut y, &x, &w, n, no, ni, false, true, false));
        lb += time_it(&pool, reps, || matmul(&mut dx, &dy, &w, n, ni, no, false, false, false));
    }
    rows.push(("base projections (7 GEMMs/layer)", lf * layers as f64, lb * layers as f64));

    // Attention.
    let q = rv(n * qw, 40, 1.0);
    let k = rv(n * kw, 41, 1.0);
    let vv = rv(n * kw, 42, 1.0);
    let mut out = vec![0f32; n * qw];
    let mut lse = vec![0f32; n * sh.heads];
    let af = time_it(&pool, reps, || attention_forward(&mut out, &mut lse, &q, &k, &vv, &seq_list, sh));
    let dout = rv(n * qw, 43, 1.0);
    let (mut dq, mut dk, mut dv) = (vec![0f32; n * qw], vec![0f32; n * kw], vec![0f32; n * kw]);
    let ab = time_it(&pool, reps, || {
        dq.iter_mut().for_each(|x| *x = 0.0);
        dk.iter_mut().for_each(|x| *x = 0.0);
        dv.iter_mut().for_each(|x| *x = 0.0);
        attention_backward(&mut dq, &mut dk, &mut dv, &dout, &out, &lse, &q, &k, &vv, &seq_list, sh)
    });
    rows.push(("attention (scalar loops)", af * layers as f64, ab * layers as f64));

    // RoPE on q and k.
    let (mut qr, mut kr) = (q.clone(), k.clone());
    let rf = time_it(&pool, reps, || {
        rope_apply(&mut qr, &pos, sh.heads, hd, &cos, &sin, false);
        rope_apply(&mut kr, &pos, sh.kv_heads, hd, &cos, &sin, false);
    });
    rows.push(("rope (q, k)", rf * layers as f64, rf * layers as f64));

    // RMSNorm (two per layer).
    let x = rv(n * d, 50, 1.0);
    let w1 = vec![1f32; d];
    let mut y = vec![0f32; n * d];
    let mut rstd = vec![0f32; n];
    let nf = time_it(&pool, reps, || rmsnorm_forward(&mut y, &mut rstd, &x, &w1, d, cfg.rms_norm_eps));
    let dyn_ = rv(n * d, 51, 1.0);
    let mut dxn = vec![0f32; n * d];
    let nb = time_it(&pool, reps, || rmsnorm_backward(&mut dxn, None, &dyn_, &x, &w1, &rstd, d));
    rows.push(("rmsnorm (2/layer)", 2.0 * nf * layers as f64, 2.0 * nb * layers as f64));

    // SwiGLU.
    let g = rv(n * f, 60, 1.0);
    let u = rv(n * f, 61, 1.0);
    let mut a = vec![0f32; n * f];
    let sf = time_it(&pool, reps, || swiglu_forward(&mut a, &g, &u));
    let da = rv(n * f, 62, 1.0);
    let (mut dg, mut du) = (vec![0f32; n * f], vec![0f32; n * f]);
    let sb = time_it(&pool, reps, || swiglu_backward(&mut dg, &mut du, &da, &g, &u));
    rows.push(("swiglu", sf * layers as f64, sb * layers as f64));

    // LM head + logprob.
    let xf = rv(n * d, 70, 1.0);
    let wh = rv(v * d, 71, 0.05);
    let mut logits = vec![0f32; n * v];
    let hf = time_it(&pool, reps.min(5), || matmul(&mut logits, &xf, &wh, n, v, d, false, true, false));
    let mut dxf = vec![0f32; n * d];
    let hb = time_it(&pool, reps.min(5), || matmul(&mut dxf, &logits, &wh, n, d, v, false, false, false));
    rows.push(("lm head GEMM", hf, hb));
    let targets: Vec<i32> = (0..n).map(|p| if (p + 1) % seq_len == 0 { -1 } else { (p * 7919 % v) as i32 }).collect();
    let mut logp = vec![0f32; n];
    let mut lse2 = vec![0f32; n];
    let pf = time_it(&pool, reps.min(5), || logprob_forward(&mut logp, &mut lse2, &logits, &targets, v));
    let dl = vec![-1.0 / n as f32; n];
    let mut lg = logits.clone();
    let pb = time_it(&pool, reps.min(5), || {
        lg.copy_from_slice(&logits);
        logprob_backward(&mut lg, &lse2, &dl, &targets, v)
    });
    // The copy in the timed closure is charged to backward; subtract a bare copy.
    let cp = time_it(&pool, reps.min(5), || lg.copy_from_slice(&logits));
    rows.push(("logprob (log-softmax over vocab)", pf, (pb - cp).max(0.0)));

    let (tf, tb): (f64, f64) = rows.iter().fold((0.0, 0.0), |(a, b), r| (a + r.1, b + r.2));
    println!("  op breakdown (estimated seconds per iteration, ops timed alone):");
    for (name, fw, bw) in &rows {
        println!("    {name:<36} fwd {fw:>7.4}  bwd {bw:>7.4}  ({:>4.1}% of fwd+bwd)", 100.0 * (fw + bw) / (tf + tb));
    }
    println!("    {:<36} fwd {tf:>7.4}  bwd {tb:>7.4}", "sum");
    json!({
        "note": "each op timed alone at this model's shapes (median of reps, same thread count) and multiplied by its calls per iteration; LoRA, residual adds, buffer copies and allocation are not in it; compare with the measured median_s",
        "ops": rows.iter().map(|(name, fw, bw)| json!({"op": name, "forward_s": round(*fw, 5), "backward_s": round(*bw, 5), "share": round((fw + bw) / (tf + tb), 4)})).collect::<Vec<_>>(),
        "sum_forward_s": round(tf, 5),
        "sum_backward_s": round(tb, 5),
    })
}
