//! Every engine op on device buffers, mirroring `crate::ops` and
//! `crate::optim` argument for argument (lengths come from the tensors where
//! the CPU version takes them from slices). All f32. Nothing here reads back
//! to the host: calls only record dispatches into the context's batch.
use super::device::{GpuContext, GpuTensor, Kernel};
use crate::ops::attention::AttnShape;
use crate::optim::AdamW;

const MATMUL: Kernel = Kernel("matmul", include_str!("kernels/matmul.wgsl"));
const EMBEDDING: Kernel = Kernel("embedding", include_str!("kernels/embedding.wgsl"));
const RMSNORM: Kernel = Kernel("rmsnorm", include_str!("kernels/rmsnorm.wgsl"));
const ROPE: Kernel = Kernel("rope", include_str!("kernels/rope.wgsl"));
const ATTENTION: Kernel = Kernel("attention", include_str!("kernels/attention.wgsl"));
const SWIGLU: Kernel = Kernel("swiglu", include_str!("kernels/swiglu.wgsl"));
const LOGPROB: Kernel = Kernel("logprob", include_str!("kernels/logprob.wgsl"));
const ROWS: Kernel = Kernel("rows", include_str!("kernels/rows.wgsl"));
const OPTIM: Kernel = Kernel("optim", include_str!("kernels/optim.wgsl"));
const DECODE: Kernel = Kernel("decode", include_str!("kernels/decode.wgsl"));

/// GEMM tile edge (rows and columns of C per workgroup).
pub const GEMM_TILE: usize = 64;
/// Largest head_dim the attention kernels take (4 dims per thread x 64).
pub const MAX_HEAD_DIM: usize = 256;

fn u(x: usize) -> u32 {
    u32::try_from(x).expect("size fits in u32")
}
fn f(x: f64) -> u32 {
    (x as f32).to_bits()
}

/// Per-row (sequence start, sequence end) for packed sequences.
pub fn seq_meta(seqs: &[(usize, usize)], rows: usize) -> Vec<u32> {
    let mut meta = vec![0u32; 2 * rows];
    for &(s, l) in seqs {
        for r in s..s + l {
            meta[2 * r] = u(s);
            meta[2 * r + 1] = u(s + l);
        }
    }
    meta
}

/// The blocks of tensors of one layout, block by block: element i of each
/// entry is the i-th block of tensor i (the tensors themselves when unsplit).
fn zip_blocks<'a>(what: &str, ts: &[&'a GpuTensor]) -> Vec<Vec<&'a GpuTensor>> {
    assert!(ts.iter().all(|t| t.same_layout(ts[0])), "{what}: operands split into different row blocks");
    let blocks: Vec<Vec<(usize, &GpuTensor)>> = ts.iter().map(|t| t.blocks()).collect();
    (0..blocks[0].len()).map(|i| blocks.iter().map(|b| b[i].1).collect()).collect()
}

/// The ops, bound to one device.
pub struct GpuOps {
    pub ctx: GpuContext,
}

impl GpuOps {
    pub fn new(ctx: GpuContext) -> Self {
        GpuOps { ctx }
    }

    /// C[m,n] (+)= op(A) op(B), as `ops::matmul::matmul`. B (a weight) or C
    /// (a weight gradient) may be split into row blocks (not both, and A
    /// never): a split B runs one GEMM per block, over output columns (tb) or
    /// accumulated over k (!tb); a split C one per block of its rows. A
    /// tensor that fits is one dispatch, as before.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(&self, c: &GpuTensor, a: &GpuTensor, b: &GpuTensor, m: usize, n: usize, k: usize, ta: bool, tb: bool, accumulate: bool) {
        assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul: buffers too small for {m}x{n}x{k}");
        if m == 0 || n == 0 {
            return;
        }
        let lda = if ta { m } else { k };
        match (c.is_split(), b.is_split()) {
            (false, false) => self.gemm(c, 0, n, a, 0, lda, b, m, n, k, ta, tb, accumulate),
            (false, true) if tb => {
                // B = [n, k]: block rows are columns r0.. of C.
                for (r0, rows, bp) in b.row_blocks(k) {
                    self.gemm(c, r0, n, a, 0, lda, bp, m, rows, k, ta, true, accumulate);
                }
            }
            (false, true) => {
                // B = [k, n]: block rows are k indices r0..; accumulate over blocks.
                for (i, (r0, rows, bp)) in b.row_blocks(n).into_iter().enumerate() {
                    let a_off = if ta { r0 * m } else { r0 };
                    self.gemm(c, 0, n, a, a_off, lda, bp, m, n, rows, ta, false, accumulate || i > 0);
                }
            }
            (true, false) => {
                // C = [m, n]: block rows are rows r0.. of op(A).
                for (r0, rows, cp) in c.row_blocks(n) {
                    let a_off = if ta { r0 } else { r0 * k };
                    self.gemm(cp, 0, n, a, a_off, lda, b, rows, n, k, ta, tb, accumulate);
                }
            }
            (true, true) => panic!("matmul: C and B both split into row blocks"),
        }
    }

    /// One GEMM dispatch: C[c_off + i ldc + j] (+)= sum_p op(A)(i, p) op(B)(p, j)
    /// with op(A)(i, p) = A[a_off + i lda + p] (or A[a_off + p lda + i] when ta).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        c: &GpuTensor,
        c_off: usize,
        ldc: usize,
        a: &GpuTensor,
        a_off: usize,
        lda: usize,
        b: &GpuTensor,
        m: usize,
        n: usize,
        k: usize,
        ta: bool,
        tb: bool,
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        debug_assert!(c_off + (m - 1) * ldc + n <= c.len(), "gemm: C block out of range");
        debug_assert!(k == 0 || a_off + if ta { (k - 1) * lda + m } else { (m - 1) * lda + k } <= a.len(), "gemm: A block out of range");
        debug_assert!(b.len() >= k * n, "gemm: B too small");
        let groups = [u(n.div_ceil(GEMM_TILE)), u(m.div_ceil(GEMM_TILE)), 1];
        self.ctx.dispatch(
            MATMUL,
            "main",
            &[u(m), u(n), u(k), ta as u32, tb as u32, accumulate as u32, u(lda), u(a_off), u(ldc), u(c_off)],
            &[(1, c), (2, a), (3, b)],
            groups,
        );
    }

    /// Each of the first `rows` rows of y (of `width`) += b.
    pub fn bias_add(&self, y: &GpuTensor, b: &GpuTensor, rows: usize, width: usize) {
        self.ctx.dispatch(ROWS, "bias_add", &[u(rows), u(width)], &[(1, y), (2, b)], self.ctx.grid_threads(rows * width));
    }

    /// db += the column sums of the first `rows` rows of dy (of `width`).
    pub fn bias_grad(&self, db: &GpuTensor, dy: &GpuTensor, rows: usize, width: usize) {
        self.ctx.dispatch(ROWS, "bias_grad", &[u(rows), u(width)], &[(1, db), (2, dy)], self.ctx.grid_threads(width));
    }

    /// x *= s over its length.
    pub fn scale(&self, x: &GpuTensor, s: f32) {
        let n = x.len();
        if n == 0 {
            return;
        }
        self.ctx.dispatch(ROWS, "scale", &[u(n), s.to_bits()], &[(1, x)], self.ctx.grid_threads(n));
    }

    /// x[r] = table[tokens[r]] (tokens: i32 tensor); a split table runs one
    /// dispatch per row block, each writing the rows whose token it holds.
    pub fn embedding_forward(&self, x: &GpuTensor, table: &GpuTensor, tokens: &GpuTensor, d: usize) {
        let total = tokens.len() * d;
        for (r0, rows, tp) in table.row_blocks(d) {
            self.ctx.dispatch(
                EMBEDDING,
                "forward",
                &[u(total), u(d), u(r0), u(rows)],
                &[(1, x), (2, tp), (3, tokens)],
                self.ctx.grid_threads(total),
            );
        }
    }

    /// dtable[tokens[r]] += dx[r], rows in order per column (deterministic);
    /// per row block of a split dtable.
    pub fn embedding_backward(&self, dtable: &GpuTensor, dx: &GpuTensor, tokens: &GpuTensor, d: usize) {
        for (r0, rows, tp) in dtable.row_blocks(d) {
            self.ctx.dispatch(
                EMBEDDING,
                "backward",
                &[u(tokens.len()), u(d), u(r0), u(rows)],
                &[(3, tokens), (4, tp), (5, dx)],
                self.ctx.grid_threads(d),
            );
        }
    }

    /// Rows = rstd.len().
    pub fn rmsnorm_forward(&self, y: &GpuTensor, rstd: &GpuTensor, x: &GpuTensor, w: &GpuTensor, d: usize, eps: f64) {
        let rows = rstd.len();
        self.ctx.dispatch(
            RMSNORM,
            "forward",
            &[u(rows), u(d), f(eps)],
            &[(1, y), (2, rstd), (3, x), (4, w)],
            self.ctx.grid(rows),
        );
    }

    /// Rows = rstd.len(). `dw` accumulates.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm_backward(&self, dx: &GpuTensor, dw: Option<&GpuTensor>, dy: &GpuTensor, x: &GpuTensor, w: &GpuTensor, rstd: &GpuTensor, d: usize) {
        let rows = rstd.len();
        self.ctx.dispatch(
            RMSNORM,
            "backward_dx",
            &[u(rows), u(d)],
            &[(1, dx), (3, x), (4, w), (5, dy), (6, rstd)],
            self.ctx.grid(rows),
        );
        if let Some(dw) = dw {
            self.ctx.dispatch(RMSNORM, "backward_dw", &[u(rows), u(d)], &[(3, x), (5, dy), (6, rstd), (7, dw)], self.ctx.grid_threads(d));
        }
    }

    /// In-place rotation of every head of `x`; rows = pos.len() (u32 tensor).
    #[allow(clippy::too_many_arguments)]
    pub fn rope_apply(&self, x: &GpuTensor, pos: &GpuTensor, heads: usize, head_dim: usize, cos: &GpuTensor, sin: &GpuTensor, inverse: bool) {
        let rows = pos.len();
        self.ctx.dispatch(
            ROPE,
            "apply",
            &[u(rows), u(heads), u(head_dim), inverse as u32],
            &[(1, x), (2, pos), (3, cos), (4, sin)],
            self.ctx.grid_threads(rows * heads * head_dim / 2),
        );
    }

    fn attn_params(sh: AttnShape, rows: usize) -> [u32; 5] {
        assert!(sh.head_dim <= MAX_HEAD_DIM, "head_dim {} > {MAX_HEAD_DIM}", sh.head_dim);
        assert!(sh.kv_heads > 0 && sh.heads.is_multiple_of(sh.kv_heads));
        [u(rows), u(sh.heads), u(sh.kv_heads), u(sh.head_dim), f(1.0 / (sh.head_dim as f64).sqrt())]
    }

    /// Causal GQA over packed sequences; `meta` from `seq_meta` (u32 tensor,
    /// 2 per row). Writes out [rows, heads*hd] and lse [rows, heads].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward(&self, out: &GpuTensor, lse: &GpuTensor, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, meta: &GpuTensor, sh: AttnShape) {
        let rows = meta.len() / 2;
        self.ctx.dispatch(
            ATTENTION,
            "forward",
            &Self::attn_params(sh, rows),
            &[(1, out), (2, lse), (3, q), (4, k), (5, v), (6, meta)],
            self.ctx.grid(rows * sh.heads),
        );
    }

    /// Overwrites dq, dk, dv.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        dq: &GpuTensor,
        dk: &GpuTensor,
        dv: &GpuTensor,
        dout: &GpuTensor,
        out: &GpuTensor,
        lse: &GpuTensor,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        meta: &GpuTensor,
        sh: AttnShape,
    ) {
        let rows = meta.len() / 2;
        let p = Self::attn_params(sh, rows);
        let dd = self.ctx.alloc(rows * sh.heads);
        self.ctx.dispatch(ATTENTION, "backward_d", &p, &[(2, &dd), (7, dout), (10, out)], self.ctx.grid_threads(rows * sh.heads));
        self.ctx.dispatch(
            ATTENTION,
            "backward_dq",
            &p,
            &[(1, dq), (3, q), (4, k), (5, v), (6, meta), (7, dout), (8, lse), (9, &dd)],
            self.ctx.grid(rows * sh.heads),
        );
        self.ctx.dispatch(
            ATTENTION,
            "backward_dkdv",
            &p,
            &[(1, dk), (2, dv), (3, q), (4, k), (5, v), (6, meta), (7, dout), (8, lse), (9, &dd)],
            self.ctx.grid(rows * sh.kv_heads),
        );
    }

    pub fn swiglu_forward(&self, a: &GpuTensor, g: &GpuTensor, uu: &GpuTensor) {
        let n = a.len();
        self.ctx.dispatch(SWIGLU, "forward", &[u(n)], &[(1, a), (3, g), (4, uu)], self.ctx.grid_threads(n));
    }

    pub fn swiglu_backward(&self, dg: &GpuTensor, du: &GpuTensor, da: &GpuTensor, g: &GpuTensor, uu: &GpuTensor) {
        let n = dg.len();
        self.ctx.dispatch(SWIGLU, "backward", &[u(n)], &[(1, dg), (2, du), (3, g), (4, uu), (5, da)], self.ctx.grid_threads(n));
    }

    /// Rows = targets.len() (i32 tensor).
    pub fn logprob_forward(&self, logp: &GpuTensor, lse: &GpuTensor, logits: &GpuTensor, targets: &GpuTensor, vocab: usize) {
        let rows = targets.len();
        self.ctx.dispatch(
            LOGPROB,
            "forward",
            &[u(rows), u(vocab)],
            &[(1, logp), (2, lse), (3, logits), (4, targets)],
            self.ctx.grid(rows),
        );
    }

    /// Turns `logits` into dL/dlogits in place.
    pub fn logprob_backward(&self, logits: &GpuTensor, lse: &GpuTensor, dlogp: &GpuTensor, targets: &GpuTensor, vocab: usize) {
        let rows = targets.len();
        self.ctx.dispatch(
            LOGPROB,
            "backward",
            &[u(rows), u(vocab)],
            &[(3, logits), (4, targets), (5, lse), (6, dlogp)],
            self.ctx.grid_threads(rows * vocab),
        );
    }

    /// dst = src[rows] (rows of `width`; dst holds rows.len() * width).
    pub fn gather_into(&self, dst: &GpuTensor, src: &GpuTensor, rows: &GpuTensor, width: usize) {
        let n = rows.len();
        assert!(dst.len() >= n * width);
        self.ctx.dispatch(ROWS, "gather", &[u(n), u(width)], &[(1, dst), (2, src), (3, rows)], self.ctx.grid_threads(n * width));
    }

    /// dst += src elementwise (dst.len() elements; split tensors block by block).
    pub fn add_assign(&self, dst: &GpuTensor, src: &GpuTensor) {
        let n = dst.len();
        assert!(src.len() >= n);
        if dst.is_split() || src.is_split() {
            for b in zip_blocks("add_assign", &[dst, src]) {
                self.add_assign(b[0], b[1]);
            }
            return;
        }
        self.ctx.dispatch(ROWS, "add_assign", &[u(n)], &[(1, dst), (2, src)], self.ctx.grid_threads(n));
    }

    /// dst[rows[i]] += scale * src[i] (rows of `width`; `rows` distinct).
    pub fn scatter_add(&self, dst: &GpuTensor, src: &GpuTensor, rows: &GpuTensor, width: usize, scale: f32) {
        let n = rows.len();
        self.ctx.dispatch(
            ROWS,
            "scatter_add",
            &[u(n), u(width), scale.to_bits()],
            &[(1, dst), (2, src), (3, rows)],
            self.ctx.grid_threads(n * width),
        );
    }

    /// A fresh norm accumulator [sum of squares, norm, clip factor] = [0, 0, 1]
    /// (a pooled buffer set by a kernel: no upload, no new buffer once warm).
    pub fn norm_accumulator(&self) -> GpuTensor {
        let acc = self.ctx.alloc(3);
        self.ctx.dispatch(OPTIM, "acc_set", &[f(0.0), f(0.0), f(1.0)], &[(1, &acc)], [1, 1, 1]);
        acc
    }

    /// acc[0] += sum of squares of `g` (two-stage reduction, fixed order).
    pub fn grad_sumsq(&self, acc: &GpuTensor, g: &GpuTensor) {
        if g.is_split() {
            for (_, p) in g.blocks() {
                self.grad_sumsq(acc, p);
            }
            return;
        }
        let n = g.len();
        if n == 0 {
            return;
        }
        let parts = n.div_ceil(256 * 8).clamp(1, 256);
        let part = self.ctx.alloc(parts);
        self.ctx.dispatch(OPTIM, "sumsq_partial", &[u(n)], &[(2, &part), (3, g)], [u(parts), 1, 1]);
        self.ctx.dispatch(OPTIM, "sumsq_final", &[u(parts)], &[(1, acc), (2, &part)], [1, 1, 1]);
    }

    /// acc[1] = norm, acc[2] = clip factor (`optim::clip_factor`).
    pub fn grad_clip(&self, acc: &GpuTensor, max_norm: f64) {
        self.ctx.dispatch(OPTIM, "clip", &[f(max_norm)], &[(1, acc)], [1, 1, 1]);
    }

    /// The global norm of a group and its clip factor, left on device.
    pub fn grad_norm_and_clip(&self, grads: &[&GpuTensor], max_norm: f64) -> GpuTensor {
        let acc = self.norm_accumulator();
        for g in grads {
            self.grad_sumsq(&acc, g);
        }
        self.grad_clip(&acc, max_norm);
        acc
    }

    /// One AdamW update of a group, as `optim::adamw_step`: `step` is the
    /// group's step count after increment (the caller keeps it on the host
    /// and skips groups with no routed token: the lazy update). The gradient
    /// scale is `clip[2]` (from `grad_norm_and_clip`).
    #[allow(clippy::too_many_arguments)]
    pub fn adamw_step(&self, opt: &AdamW, step: u64, params: &[&GpuTensor], grads: &[&GpuTensor], m: &[&GpuTensor], v: &[&GpuTensor], clip: &GpuTensor) {
        let t = step as i32;
        let bc1 = 1.0 - opt.beta1.powi(t);
        let bc2 = 1.0 - opt.beta2.powi(t);
        for i in 0..params.len() {
            if [params[i], grads[i], m[i], v[i]].iter().any(|t| t.is_split()) {
                for b in zip_blocks("adamw", &[params[i], grads[i], m[i], v[i]]) {
                    self.adamw_step(opt, step, &[b[0]], &[b[1]], &[b[2]], &[b[3]], clip);
                }
                continue;
            }
            let n = params[i].len();
            let p = [
                u(n),
                f(opt.beta1),
                f(opt.beta2),
                f(1.0 - opt.beta1),
                f(1.0 - opt.beta2),
                f(opt.lr / bc1),
                f(bc2.sqrt()),
                f(1.0 - opt.lr * opt.weight_decay),
                f(opt.eps),
            ];
            self.ctx.dispatch(
                OPTIM,
                "adamw",
                &p,
                &[(3, grads[i]), (4, params[i]), (5, m[i]), (6, v[i]), (7, clip)],
                self.ctx.grid_threads(n),
            );
        }
    }

    /// Writes each row's new k/v ([rows, kv_width]) into cache cache_idx[r]
    /// ([caches, max_len, kv_width]) at position pos[r] (u32 tensors).
    #[allow(clippy::too_many_arguments)]
    pub fn kv_append(
        &self,
        cache_k: &GpuTensor,
        cache_v: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        pos: &GpuTensor,
        cache_idx: &GpuTensor,
        kv_width: usize,
        max_len: usize,
    ) {
        let s = pos.len();
        assert_eq!(cache_idx.len(), s, "kv_append: one cache index per row");
        self.ctx.dispatch(
            DECODE,
            "append",
            &[u(s), u(kv_width), u(max_len)],
            &[(1, cache_k), (2, cache_v), (3, k), (4, v), (5, pos), (8, cache_idx)],
            self.ctx.grid_threads(s * kv_width),
        );
    }

    /// Single-token attention: row s's query q[s] at position pos[s] attends
    /// to rows 0..=pos[s] of cache cache_idx[s]. Writes out [rows, heads*hd]
    /// and lse [rows, heads].
    #[allow(clippy::too_many_arguments)]
    pub fn decode_attention(
        &self,
        out: &GpuTensor,
        lse: &GpuTensor,
        q: &GpuTensor,
        cache_k: &GpuTensor,
        cache_v: &GpuTensor,
        pos: &GpuTensor,
        cache_idx: &GpuTensor,
        max_len: usize,
        sh: AttnShape,
    ) {
        let s = pos.len();
        assert_eq!(cache_idx.len(), s, "decode_attention: one cache index per row");
        let p = Self::attn_params(sh, s);
        self.ctx.dispatch(
            DECODE,
            "attend",
            &[p[0], p[1], p[2], p[3], p[4], u(max_len)],
            &[(1, out), (2, lse), (3, q), (5, pos), (6, cache_k), (7, cache_v), (8, cache_idx)],
            self.ctx.grid(s * sh.heads),
        );
    }
}
