//! One conformance suite for every backend. Each test body is written once,
//! generic over `B: Backend<F = f32>` (buffers through the trait only), and
//! `test_device!` instantiates it per backend, as candle's `test_device!`
//! does: `<body>::cpu` on `CpuBackend<f32>` and `<body>::wgpu` on
//! `WgpuBackend`. Every result is compared with the f64 CPU reference (the
//! ops of `dart_core::ops`, and the composite ops on `CpuBackend<f64>`).
//!
//! Tolerances, per element: |x - ref| <= tol * max(1, |ref|) with
//! ELEMENTWISE = 1e-5 (embedding, rope, swiglu, AdamW, gathers) and
//! REDUCTION = 1e-4 (GEMM, linear, LoRA, RMSNorm, attention, log-softmax,
//! grad norm).
//!
//! The wgpu tests need an adapter (CI installs Mesa lavapipe). Without one
//! they fail, unless DART_SKIP_WGPU=1. DART_WGPU_ADAPTER pins one. The tests
//! after the suite are about the wgpu backend's own storage and adapter
//! choice.
#![cfg(feature = "wgpu")]

use dart_core::backend::cpu::CpuBackend;
use dart_core::backend::wgpu::{GpuContext, GpuOps, WgpuBackend};
use dart_core::backend::{Backend, LoraDims, LoraScratch};
use dart_core::ops::attention::{attention_backward, attention_forward, AttnShape};
use dart_core::ops::embedding::{embedding_backward, embedding_forward};
use dart_core::ops::logprob::{logprob_backward, logprob_forward};
use dart_core::ops::matmul::matmul;
use dart_core::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use dart_core::ops::rope::{rope_apply, rope_tables, RopeScaling};
use dart_core::ops::swiglu::{swiglu_backward, swiglu_forward};
use dart_core::optim::{adamw_step, clip_factor, grad_norm, AdamState, AdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

const ELEMENTWISE: f64 = 1e-5;
const REDUCTION: f64 = 1e-4;

fn rand64(n: usize, seed: u64) -> Vec<f64> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random::<f64>() * 2.0 - 1.0).collect()
}
fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
/// Inputs rounded to f32 first, so both sides see the same numbers.
fn rand_in(n: usize, seed: u64) -> Vec<f64> {
    rand64(n, seed).into_iter().map(|v| v as f32 as f64).collect()
}

// ---- the backends and the macro ------------------------------------------

fn cpu() -> &'static CpuBackend<f32> {
    static CPU: OnceLock<CpuBackend<f32>> = OnceLock::new();
    CPU.get_or_init(CpuBackend::default)
}

fn skip_wgpu() -> bool {
    std::env::var("DART_SKIP_WGPU").is_ok_and(|s| s == "1")
}

/// The wgpu backend (one per test binary), None when DART_SKIP_WGPU=1; a
/// missing adapter is a failure, not a skip.
fn wgpu() -> Option<&'static WgpuBackend> {
    static GPU: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| {
        if skip_wgpu() {
            return None;
        }
        match GpuContext::new(None, false) {
            Ok(c) => Some(WgpuBackend::new(c)),
            Err(e) => panic!("wgpu backend unavailable ({e}); set DART_SKIP_WGPU=1 to run the cpu half only"),
        }
    })
    .as_ref()
}

/// One test per backend for each body: `<body>::cpu`, `<body>::wgpu`.
macro_rules! test_device {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn cpu() {
                super::$body(super::cpu());
            }
            #[test]
            fn wgpu() {
                match super::wgpu() {
                    Some(b) => super::$body(b),
                    None => eprintln!("{}: wgpu skipped (DART_SKIP_WGPU=1)", stringify!($body)),
                }
            }
        }
    )*};
}

test_device!(
    gemm_all_transposes_and_awkward_shapes,
    linear_forward_backward,
    embedding_forward_backward,
    rmsnorm_forward_backward,
    rope_forward_and_inverse,
    attention_gqa_packed_forward_backward,
    swiglu_forward_backward,
    routed_lora_row_subsets,
    logprob_forward_backward,
    adamw_with_clipping_three_steps,
    lazy_update_leaves_an_untouched_group_bit_identical,
    decode_kv_append_and_single_token_attention,
);

// ---- host helpers ----------------------------------------------------------

fn name<B: Backend>(b: &B) -> String {
    let i = b.info();
    format!("{} ({})", i.backend, i.adapter)
}
fn up<B: Backend<F = f32>>(b: &B, x: &[f64]) -> B::Buf {
    b.upload(&to32(x))
}
fn zeros<B: Backend<F = f32>>(b: &B, n: usize) -> B::Buf {
    b.upload(&vec![0.0; n])
}

/// Asserts |got - want| <= tol * max(1, |want|) elementwise.
fn close(backend: &str, what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{backend}: {what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs() / w.abs().max(1.0);
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{backend}: {what}: element {} = {} vs f64 {} (scaled error {:.3e} > {tol:.0e})",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}

/// Downloads `bufs` in one read-back and compares each with its reference.
fn check<B: Backend<F = f32>>(b: &B, what: &str, bufs: &[(&str, &B::Buf, &[f64], f64)]) {
    let got = b.download_many(&bufs.iter().map(|t| t.1).collect::<Vec<_>>());
    let n = name(b);
    for ((label, _, want, tol), g) in bufs.iter().zip(&got) {
        close(&n, &format!("{what} {label}"), &g[..want.len()], want, *tol);
    }
}

// ---- the suite -------------------------------------------------------------

fn gemm_all_transposes_and_awkward_shapes<B: Backend<F = f32>>(b: &B) {
    let shapes = [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 64, 16), (70, 65, 80), (129, 67, 150), (5, 200, 3), (1, 300, 257)];
    for (si, &(m, n, k)) in shapes.iter().enumerate() {
        for ta in [false, true] {
            for tb in [false, true] {
                for acc in [false, true] {
                    let s = si as u64 * 10;
                    let (a, bb, c0) = (rand_in(m * k, s + 1), rand_in(k * n, s + 2), rand_in(m * n, s + 3));
                    let mut want = c0.clone();
                    matmul(&mut want, &a, &bb, m, n, k, ta, tb, acc);
                    let mut gc = up(b, &c0);
                    b.matmul(&mut gc, &up(b, &a), &up(b, &bb), m, n, k, ta, tb, acc);
                    check(b, &format!("matmul {m}x{n}x{k} ta={ta} tb={tb} acc={acc}"), &[("c", &gc, &want, REDUCTION)]);
                }
            }
        }
    }
}

fn linear_forward_backward<B: Backend<F = f32>>(b: &B) {
    let (rows, ni, no) = (13, 70, 33);
    let (x, w, bias, dy) = (rand_in(rows * ni, 1), rand_in(no * ni, 2), rand_in(no, 3), rand_in(rows * no, 4));
    let (dx0, dw0, db0) = (rand_in(rows * ni, 5), rand_in(no * ni, 6), rand_in(no, 7));
    let r = CpuBackend::<f64>::default();
    let mut y = vec![0.0; rows * no];
    let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
    r.linear_forward(&mut y, &x, &w, Some(&bias), rows, ni, no);
    r.linear_backward(&mut dx, true, Some(&mut dw), Some(&mut db), &dy, &x, &w, rows, ni, no);
    for with_bias in [true, false] {
        let mut gy = zeros(b, rows * no);
        let (mut gdx, mut gdw, mut gdb) = (up(b, &dx0), up(b, &dw0), up(b, &db0));
        let (gx, gw, gb, gdy) = (up(b, &x), up(b, &w), up(b, &bias), up(b, &dy));
        if with_bias {
            b.linear_forward(&mut gy, &gx, &gw, Some(&gb), rows, ni, no);
            b.linear_backward(&mut gdx, true, Some(&mut gdw), Some(&mut gdb), &gdy, &gx, &gw, rows, ni, no);
            check(b, "linear", &[("y", &gy, &y, REDUCTION), ("dx", &gdx, &dx, REDUCTION), ("dw", &gdw, &dw, REDUCTION), ("db", &gdb, &db, REDUCTION)]);
        } else {
            // No bias, dx overwritten, no dw: y = x W^T, dx = dy W.
            let mut y_nb = vec![0.0; rows * no];
            let mut dx_nb = vec![0.0; rows * ni];
            r.linear_forward(&mut y_nb, &x, &w, None, rows, ni, no);
            r.linear_backward(&mut dx_nb, false, None, None, &dy, &x, &w, rows, ni, no);
            b.linear_forward(&mut gy, &gx, &gw, None, rows, ni, no);
            b.linear_backward(&mut gdx, false, None, None, &gdy, &gx, &gw, rows, ni, no);
            check(b, "linear without bias", &[("y", &gy, &y_nb, REDUCTION), ("dx", &gdx, &dx_nb, REDUCTION)]);
        }
    }
}

fn embedding_forward_backward<B: Backend<F = f32>>(b: &B) {
    let (vocab, d) = (11, 37);
    let tokens = [3, 0, 3, 10, 7, 3, 0];
    let (table, dx, dt0) = (rand_in(vocab * d, 1), rand_in(tokens.len() * d, 2), rand_in(vocab * d, 3));
    let mut x = vec![0.0; tokens.len() * d];
    let mut dt = dt0.clone();
    embedding_forward(&mut x, &table, &tokens, d);
    embedding_backward(&mut dt, &dx, &tokens, d);
    let (mut gx, mut gdt, gtok) = (zeros(b, x.len()), up(b, &dt0), b.new_i32(&tokens));
    b.embedding_forward(&mut gx, &up(b, &table), &gtok, d);
    b.embedding_backward(&mut gdt, &up(b, &dx), &gtok, d);
    check(b, "embedding", &[("x", &gx, &x, ELEMENTWISE), ("dtable", &gdt, &dt, ELEMENTWISE)]);
}

fn rmsnorm_forward_backward<B: Backend<F = f32>>(b: &B) {
    let eps = 1e-6;
    for &(rows, d) in &[(5, 300), (3, 7)] {
        let (x, w, dy, dw0) = (rand_in(rows * d, 1), rand_in(d, 2), rand_in(rows * d, 3), rand_in(d, 4));
        let (mut y, mut r, mut dx, mut dw) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows * d], dw0.clone());
        rmsnorm_forward(&mut y, &mut r, &x, &w, d, eps);
        rmsnorm_backward(&mut dx, Some(&mut dw), &dy, &x, &w, &r, d);
        let (mut gy, mut gr, mut gdx, mut gdw) = (zeros(b, rows * d), zeros(b, rows), zeros(b, rows * d), up(b, &dw0));
        let (gx, gw) = (up(b, &x), up(b, &w));
        b.rmsnorm_forward(&mut gy, &mut gr, &gx, &gw, d, eps);
        b.rmsnorm_backward(&mut gdx, Some(&mut gdw), &up(b, &dy), &gx, &gw, &gr, d);
        check(
            b,
            &format!("rmsnorm {rows}x{d}"),
            &[("y", &gy, &y, REDUCTION), ("rstd", &gr, &r, REDUCTION), ("dx", &gdx, &dx, REDUCTION), ("dw", &gdw, &dw, REDUCTION)],
        );
    }
}

fn rope_forward_and_inverse<B: Backend<F = f32>>(b: &B) {
    let (heads, hd, rows) = (3, 10, 6);
    let pos = [0u32, 5, 1, 2, 7, 3];
    let (inv_freq, _) = RopeScaling::Default.inv_freq(hd, 10000.0);
    let (cos, sin) = rope_tables::<f64>(8, &inv_freq, 1.0);
    let x = rand_in(rows * heads * hd, 1);
    for inverse in [false, true] {
        let mut want = x.clone();
        rope_apply(&mut want, &pos, heads, hd, &cos, &sin, inverse);
        let mut gx = up(b, &x);
        b.rope_apply(&mut gx, &b.new_u32(&pos), heads, hd, &up(b, &cos), &up(b, &sin), inverse);
        check(b, &format!("rope inverse={inverse}"), &[("x", &gx, &want, ELEMENTWISE)]);
    }
}

fn attention_gqa_packed_forward_backward<B: Backend<F = f32>>(b: &B) {
    // Several packed sequences, one longer than a 64-key chunk; GQA 4:2 and
    // 6:1; head_dim above 64 so threads own several dimensions.
    let cases = [
        (AttnShape { heads: 4, kv_heads: 2, head_dim: 8 }, vec![(0, 3), (3, 1), (4, 70)]),
        (AttnShape { heads: 6, kv_heads: 1, head_dim: 80 }, vec![(0, 5), (5, 9)]),
        (AttnShape { heads: 2, kv_heads: 2, head_dim: 4 }, vec![(0, 1)]),
    ];
    for (ci, (sh, seqs)) in cases.iter().enumerate() {
        let sh = *sh;
        let rows: usize = seqs.iter().map(|s| s.1).sum();
        let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
        let s = ci as u64 * 10;
        let (q, k, v, dout) = (rand_in(rows * qw, s + 1), rand_in(rows * kw, s + 2), rand_in(rows * kw, s + 3), rand_in(rows * qw, s + 4));
        let (mut o, mut l) = (vec![0.0; rows * qw], vec![0.0; rows * sh.heads]);
        let (mut dq, mut dk, mut dv) = (vec![0.0; rows * qw], vec![0.0; rows * kw], vec![0.0; rows * kw]);
        attention_forward(&mut o, &mut l, &q, &k, &v, seqs, sh);
        attention_backward(&mut dq, &mut dk, &mut dv, &dout, &o, &l, &q, &k, &v, seqs, sh);
        let meta = b.new_seqs(seqs, rows);
        let (mut go, mut gl) = (zeros(b, o.len()), zeros(b, l.len()));
        let (mut gdq, mut gdk, mut gdv) = (zeros(b, dq.len()), zeros(b, dk.len()), zeros(b, dv.len()));
        let (gq, gk, gv) = (up(b, &q), up(b, &k), up(b, &v));
        b.attention_forward(&mut go, &mut gl, &gq, &gk, &gv, &meta, sh);
        b.attention_backward(&mut gdq, &mut gdk, &mut gdv, &up(b, &dout), &go, &gl, &gq, &gk, &gv, &meta, sh);
        check(
            b,
            &format!("attention case {ci}"),
            &[
                ("out", &go, &o, REDUCTION),
                ("lse", &gl, &l, REDUCTION),
                ("dq", &gdq, &dq, REDUCTION),
                ("dk", &gdk, &dk, REDUCTION),
                ("dv", &gdv, &dv, REDUCTION),
            ],
        );
    }
}

fn swiglu_forward_backward<B: Backend<F = f32>>(b: &B) {
    let n = 1000;
    let (g, u, da) = (rand_in(n, 1).iter().map(|x| x * 4.0).collect::<Vec<_>>(), rand_in(n, 2), rand_in(n, 3));
    let (mut a, mut dg, mut du) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    swiglu_forward(&mut a, &g, &u);
    swiglu_backward(&mut dg, &mut du, &da, &g, &u);
    let (mut ga, mut gdg, mut gdu) = (zeros(b, n), zeros(b, n), zeros(b, n));
    let (gg, gu) = (up(b, &g), up(b, &u));
    b.swiglu_forward(&mut ga, &gg, &gu);
    b.swiglu_backward(&mut gdg, &mut gdu, &up(b, &da), &gg, &gu);
    check(b, "swiglu", &[("a", &ga, &a, ELEMENTWISE), ("dg", &gdg, &dg, ELEMENTWISE), ("du", &gdu, &du, ELEMENTWISE)]);
}

fn routed_lora_row_subsets<B: Backend<F = f32>>(b: &B) {
    let dims = LoraDims { total_rows: 9, n_in: 70, n_out: 33, rank: 4 };
    let (x, a, bm, dy) = (rand_in(9 * 70, 1), rand_in(4 * 70, 2), rand_in(33 * 4, 3), rand_in(9 * 33, 4));
    let (y0, dx0, da0, db0) = (rand_in(9 * 33, 5), rand_in(9 * 70, 6), rand_in(4 * 70, 7), rand_in(33 * 4, 8));
    let scale = 1.5;
    let r = CpuBackend::<f64>::default();
    // One scratch across the subsets, as the model reuses one per forward.
    let mut s = LoraScratch::new(b);
    for rows in [vec![0u32, 2, 3, 8], (0..9).collect(), vec![5], vec![]] {
        let (mut y, mut uu, mut dx, mut da, mut db) = (y0.clone(), vec![], dx0.clone(), da0.clone(), db0.clone());
        let mut rs = LoraScratch::new(&r);
        r.lora_forward(&mut y, &mut uu, &x, &a, &bm, &rows, scale, dims, &mut rs);
        r.lora_backward(&mut dx, &mut da, &mut db, &dy, &x, &uu, &a, &bm, &rows, scale, dims, &mut rs);
        let (mut gy, mut gu, mut gdx, mut gda, mut gdb) = (up(b, &y0), b.empty(), up(b, &dx0), up(b, &da0), up(b, &db0));
        let (gx, ga, gb, grows) = (up(b, &x), up(b, &a), up(b, &bm), b.new_u32(&rows));
        b.lora_forward(&mut gy, &mut gu, &gx, &ga, &gb, &grows, scale as f32, dims, &mut s);
        b.lora_backward(&mut gdx, &mut gda, &mut gdb, &up(b, &dy), &gx, &gu, &ga, &gb, &grows, scale as f32, dims, &mut s);
        assert_eq!(b.len(&gu), uu.len(), "{}: lora u holds rows x rank", name(b));
        check(
            b,
            &format!("lora rows {rows:?}"),
            &[
                ("y", &gy, &y, REDUCTION),
                ("u", &gu, &uu, REDUCTION),
                ("dx", &gdx, &dx, REDUCTION),
                ("dA", &gda, &da, REDUCTION),
                ("dB", &gdb, &db, REDUCTION),
            ],
        );
    }
}

fn logprob_forward_backward<B: Backend<F = f32>>(b: &B) {
    let (rows, vocab) = (6, 300);
    let z: Vec<f64> = rand_in(rows * vocab, 1).iter().map(|x| x * 8.0).collect();
    let targets = [3, -1, 0, 299, 150, 7];
    let dlogp = [0.5, 2.0, -1.0, 1.5, 0.0, -0.25];
    let (mut lp, mut l) = (vec![0.0; rows], vec![0.0; rows]);
    logprob_forward(&mut lp, &mut l, &z, &targets, vocab);
    let mut dz = z.clone();
    logprob_backward(&mut dz, &l, &dlogp, &targets, vocab);
    let (mut glp, mut gl, mut gz, gt) = (zeros(b, rows), zeros(b, rows), up(b, &z), b.new_i32(&targets));
    b.logprob_forward(&mut glp, &mut gl, &gz, &gt, vocab);
    check(b, "logprob", &[("logp", &glp, &lp, REDUCTION), ("lse", &gl, &l, REDUCTION)]);
    b.logprob_backward(&mut gz, &gl, &up(b, &dlogp), &gt, vocab);
    check(b, "logprob", &[("dlogits", &gz, &dz, ELEMENTWISE)]);
}

fn cpu_adamw<T: dart_core::float::Float>(opt: &AdamW, params: &mut [Vec<T>], m: &mut [Vec<T>], v: &mut [Vec<T>], grads: &[Vec<Vec<T>>]) -> f64 {
    let mut st = AdamState::<T> { step: 0, m: m.to_vec(), v: v.to_vec() };
    let mut norm = 0.0;
    for g in grads {
        let mut g = g.clone();
        norm = grad_norm(&g.iter().collect::<Vec<_>>());
        let scale = clip_factor(norm, opt.max_grad_norm);
        let mut pg: Vec<(&mut Vec<T>, &mut Vec<T>)> = params.iter_mut().zip(g.iter_mut()).collect();
        adamw_step(opt, &mut st, &mut pg, scale);
    }
    m.clone_from_slice(&st.m);
    v.clone_from_slice(&st.v);
    norm
}

fn adamw_with_clipping_three_steps<B: Backend<F = f32>>(b: &B) {
    let sizes = [300usize, 17];
    for max_norm in [0.0, 0.5] {
        let opt = AdamW { lr: 0.01, weight_decay: 0.1, max_grad_norm: max_norm, ..Default::default() };
        let p0: Vec<Vec<f64>> = sizes.iter().enumerate().map(|(i, &n)| rand_in(n, i as u64 + 1)).collect();
        let z: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let grads: Vec<Vec<Vec<f64>>> = (0..3).map(|s| sizes.iter().enumerate().map(|(i, &n)| rand_in(n, 100 + s * 10 + i as u64)).collect()).collect();
        let (mut p, mut m, mut v) = (p0.clone(), z.clone(), z.clone());
        let norm = cpu_adamw(&opt, &mut p, &mut m, &mut v, &grads);
        let ups = |x: &[Vec<f64>]| x.iter().map(|t| up(b, t)).collect::<Vec<_>>();
        let (mut gp, mut gm, mut gv) = (ups(&p0), ups(&z), ups(&z));
        let mut last = None;
        for (s, g) in grads.iter().enumerate() {
            let gg = ups(g);
            let refs: Vec<_> = gg.iter().collect();
            let clip = b.grad_norm(&refs, opt.max_grad_norm);
            b.adamw_step(&opt, s as u64 + 1, &mut gp.iter_mut().collect::<Vec<_>>(), &refs, &mut gm.iter_mut().collect::<Vec<_>>(), &mut gv.iter_mut().collect::<Vec<_>>(), &clip);
            last = Some(clip);
        }
        let gnorm = b.read_norms(&[last.as_ref().unwrap()])[0];
        let n = format!("{} max_norm={max_norm}", name(b));
        assert!((gnorm - norm).abs() <= REDUCTION * norm, "{n}: grad norm {gnorm} vs {norm}");
        for i in 0..sizes.len() {
            check(b, &format!("adamw max_norm={max_norm} group {i}"), &[("param", &gp[i], &p[i], ELEMENTWISE), ("m", &gm[i], &m[i], ELEMENTWISE), ("v", &gv[i], &v[i], ELEMENTWISE)]);
        }
    }
}

/// A group with no routed token is simply not stepped: its buffers must
/// come back bit for bit after another group's step in the same batch.
fn lazy_update_leaves_an_untouched_group_bit_identical<B: Backend<F = f32>>(b: &B) {
    let idle = rand_in(100, 1);
    let (ip, im, iv) = (up(b, &idle), up(b, &idle), up(b, &idle));
    let (mut p, g, mut m, mut v) = (up(b, &idle), up(b, &idle), zeros(b, 100), zeros(b, 100));
    let opt = AdamW { lr: 0.1, max_grad_norm: 1.0, ..Default::default() };
    let clip = b.grad_norm(&[&g], opt.max_grad_norm);
    b.adamw_step(&opt, 1, &mut [&mut p], &[&g], &mut [&mut m], &mut [&mut v], &clip);
    let r = b.download_many(&[&ip, &im, &iv, &p]);
    let idle32 = to32(&idle);
    for t in &r[..3] {
        assert!(t.iter().zip(&idle32).all(|(a, c)| a.to_bits() == c.to_bits()), "{}: an idle group changed", name(b));
    }
    assert!(r[3].iter().zip(&idle32).any(|(a, c)| a != c), "{}: the stepped group moved", name(b));
}

/// Decoding reference: full causal attention over each session's rows, last row.
fn cpu_decode<T: dart_core::float::Float>(out: &mut [T], ks: &[Vec<T>], vs: &[Vec<T>], q: &[T], pos: &[u32], sh: AttnShape) {
    let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
    for (s, &p) in pos.iter().enumerate() {
        let len = p as usize + 1;
        // queries: zeros except the last row, which is q[s]
        let mut qq = vec![T::zero(); len * qw];
        qq[(len - 1) * qw..].copy_from_slice(&q[s * qw..(s + 1) * qw]);
        let mut o = vec![T::zero(); len * qw];
        let mut l = vec![T::zero(); len * sh.heads];
        attention_forward(&mut o, &mut l, &qq, &ks[s][..len * kw], &vs[s][..len * kw], &[(0, len)], sh);
        out[s * qw..(s + 1) * qw].copy_from_slice(&o[(len - 1) * qw..]);
    }
}

/// Sessions s with caches of pos[s]+1 rows, appended one step at a time as
/// decoding does (each cache grown as it goes, over 64 positions for one),
/// then single-token attention of q[s] at its last position.
fn decode_kv_append_and_single_token_attention<B: Backend<F = f32>>(b: &B) {
    let sh = AttnShape { heads: 4, kv_heads: 2, head_dim: 16 };
    let (qw, kw) = (sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim);
    let pos = [0u32, 6, 70];
    let max_len = 71;
    let ks: Vec<Vec<f64>> = (0..3).map(|s| rand_in(max_len * kw, 10 + s)).collect();
    let vs: Vec<Vec<f64>> = (0..3).map(|s| rand_in(max_len * kw, 20 + s)).collect();
    let q = rand_in(3 * qw, 1);
    let mut want = vec![0.0; 3 * qw];
    cpu_decode(&mut want, &ks, &vs, &q, &pos, sh);
    let layer = 1;
    let mut kv = b.kv_new(2, kw);
    for t in 0..max_len {
        let live: Vec<usize> = (0..3).filter(|&s| t <= pos[s] as usize).collect();
        let (mut nk, mut nv) = (Vec::new(), Vec::new());
        for &s in &live {
            b.kv_reserve(&mut kv, s, t + 1);
            nk.extend_from_slice(&ks[s][t * kw..(t + 1) * kw]);
            nv.extend_from_slice(&vs[s][t * kw..(t + 1) * kw]);
        }
        let rows = b.new_rows(&live.iter().map(|&s| (s, t)).collect::<Vec<_>>());
        b.kv_append(&mut kv, layer, &up(b, &nk), &up(b, &nv), &rows);
    }
    let mut go = zeros(b, 3 * qw);
    let rows = b.new_rows(&pos.iter().enumerate().map(|(s, &p)| (s, p as usize)).collect::<Vec<_>>());
    b.attention_cached(&mut go, &up(b, &q), &kv, layer, &rows, sh);
    check(b, "decode attention", &[("out", &go, &want, REDUCTION)]);
}

// ---- the wgpu backend's own storage and adapter choice ---------------------

/// The GEMM and the embedding with a weight (B), a weight gradient (C) or
/// a table split into row blocks, as wgpu stores tensors over the binding
/// limit: contexts with a split size of 64 bytes (one row per block for
/// most widths) and of 1000 bytes (several rows per block, a short last one).
#[test]
fn gemm_and_embedding_with_operands_split_into_row_blocks() {
    if skip_wgpu() {
        return;
    }
    let shapes = [(3, 5, 7), (17, 9, 33), (70, 65, 80), (5, 200, 3), (1, 130, 257), (66, 1, 70)];
    for split in [64u64, 1000] {
        let ctx = dart_core::backend::wgpu::with_max_binding_bytes(split, || GpuContext::new(None, false)).expect("wgpu adapter");
        assert_eq!(ctx.split_bytes, split);
        let ops = GpuOps::new(ctx);
        let c = &ops.ctx;
        let splits = |len: usize, width: usize| width < len && (len * 4) as u64 > split;
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            for ta in [false, true] {
                for acc in [false, true] {
                    let s = si as u64 * 10;
                    let what = |mode: &str| format!("split {split}: {mode} {m}x{n}x{k} ta={ta} acc={acc}");
                    // B split, tb: C = op(A) W^T with W [n, k] (logits, linear forward).
                    for tb in [true, false] {
                        let (a, w, c0) = (rand_in(m * k, s + 1), rand_in(k * n, s + 2), rand_in(m * n, s + 3));
                        let mut want = c0.clone();
                        matmul(&mut want, &a, &w, m, n, k, ta, tb, acc);
                        let width = if tb { k } else { n };
                        let gw = c.upload_rows(&to32(&w), width);
                        assert_eq!(gw.is_split(), splits(k * n, width), "{}", what("B layout"));
                        let (gc, ga) = (c.upload(&to32(&c0)), c.upload(&to32(&a)));
                        ops.matmul(&gc, &ga, &gw, m, n, k, ta, tb, acc);
                        close("wgpu", &what(&format!("B split tb={tb}")), &c.download(&gc), &want, REDUCTION);
                    }
                    // C split: dW [m, n] (+)= op(A) op(B) (weight gradients).
                    for tb in [false, true] {
                        let (a, bb, c0) = (rand_in(m * k, s + 4), rand_in(k * n, s + 5), rand_in(m * n, s + 6));
                        let mut want = c0.clone();
                        matmul(&mut want, &a, &bb, m, n, k, ta, tb, acc);
                        let gc = c.alloc_rows(m * n, n);
                        assert_eq!(gc.is_split(), splits(m * n, n), "{}", what("C layout"));
                        c.write(&gc, &to32(&c0));
                        let (ga, gb) = (c.upload(&to32(&a)), c.upload(&to32(&bb)));
                        ops.matmul(&gc, &ga, &gb, m, n, k, ta, tb, acc);
                        close("wgpu", &what(&format!("C split tb={tb}")), &c.download(&gc), &want, REDUCTION);
                    }
                }
            }
        }
        // Embedding forward and backward with the table split.
        for &(vocab, d) in &[(11, 37), (53, 7)] {
            let tokens = [3, 0, 3, 10, 7, 3, 0, 9, 52 % vocab as i32, 40 % vocab as i32];
            let (table, dx, dt0) = (rand_in(vocab * d, 1), rand_in(tokens.len() * d, 2), rand_in(vocab * d, 3));
            let mut x = vec![0.0; tokens.len() * d];
            let mut dt = dt0.clone();
            embedding_forward(&mut x, &table, &tokens, d);
            embedding_backward(&mut dt, &dx, &tokens, d);
            let gt = c.upload_rows(&to32(&table), d);
            let gdt = c.upload_rows(&to32(&dt0), d);
            assert!(gt.is_split() && gdt.num_parts() > 1, "split {split}: the table is split");
            let (gx, gtok, gdx) = (c.zeros(x.len()), c.upload_i32(&tokens), c.upload(&to32(&dx)));
            ops.embedding_forward(&gx, &gt, &gtok, d);
            ops.embedding_backward(&gdt, &gdx, &gtok, d);
            close("wgpu", &format!("split {split}: embedding x {vocab}x{d}"), &c.download(&gx), &x, ELEMENTWISE);
            close("wgpu", &format!("split {split}: embedding dtable {vocab}x{d}"), &c.download(&gdt), &dt, ELEMENTWISE);
        }
    }
}

#[test]
fn wgpu_request_names_adapters_when_pin_matches_nothing() {
    match GpuContext::new(Some("no-such-adapter-xyz"), false) {
        Ok(_) => panic!("a pin that matches nothing must fail"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.code(), "DART_INVALID_ARGUMENT");
            assert!(msg.contains("adapters found") && msg.contains("mesa-vulkan-drivers"), "{msg}");
        }
    }
    let kind: dart_core::backend::wgpu::BackendKind = "auto".parse().unwrap();
    assert_eq!(kind, dart_core::backend::wgpu::BackendKind::Auto);
    assert!("tpu".parse::<dart_core::backend::wgpu::BackendKind>().is_err());
}

#[test]
fn auto_selection_takes_a_real_gpu_or_the_pin_else_cpu() {
    use dart_core::backend::wgpu::{list_adapters, select_backend, BackendKind};
    if skip_wgpu() {
        return;
    }
    assert!(select_backend(BackendKind::Cpu, None).unwrap().is_none());
    let found = list_adapters();
    if std::env::var(dart_core::backend::wgpu::ADAPTER_ENV).is_err() {
        let auto = select_backend(BackendKind::Auto, None).unwrap();
        assert_eq!(auto.is_some(), found.iter().any(|a| a.is_gpu), "auto picks wgpu exactly when a real GPU is present: {found:?}");
    }
    // An explicit pin is honoured by auto even for a CPU adapter (lavapipe).
    let first = &found.first().expect("an adapter (wgpu() would have failed)").name;
    let pinned = select_backend(BackendKind::Auto, Some(first)).unwrap().expect("pinned adapter");
    assert_eq!(&pinned.adapter.name, first);
}
