//! The decode forward of generation, written once against `Backend`: the
//! rows of a decode call (new tokens of every item, each routed to its
//! writer's adapter) go through the layers with their keys and values
//! appended to per-item KV caches; only each item's last row reaches the
//! final norm and the LM head (in blocks of rows where the logits would
//! exceed one backend tensor, as in `crate::model`).
use crate::backend::{Backend, LoraScratch};
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::model::{attn_shape, head_norm, routed_projection, row_blocks, Model, Rope};
use crate::weights::Proj;

/// Reused buffers of the decode forward, and the session's KV caches.
pub(crate) struct DecodeState<B: Backend> {
    pub kv: B::Kv,
    rope: Rope<B>,
    x: B::Buf,
    xn: B::Buf,
    rstd: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    /// Qwen3: q and k before the per-head RMSNorm, and its 1/rms.
    q_raw: B::Buf,
    k_raw: B::Buf,
    rstd_h: B::Buf,
    attn: B::Buf,
    tmp: B::Buf,
    gate: B::Buf,
    up: B::Buf,
    act: B::Buf,
    us: Vec<B::Buf>,
    lora: LoraScratch<B::Buf>,
    last: B::Buf,
    logits: B::Buf,
    /// The index tensors of a decode call, rewritten in place.
    tokens: B::I32,
    pos: B::U32,
    groups: Vec<B::U32>,
    rows: B::Rows,
    last_idx: B::U32,
    /// The LM head in blocks of rows: one block's input rows, and the
    /// logits of each block (read back together).
    blk: B::Buf,
    logit_blocks: Vec<B::Buf>,
}

/// The rows one decode call encodes: all pending rows of every item.
pub(crate) struct DecodeBatch {
    pub tokens: Vec<i32>,
    pub pos: Vec<u32>,
    /// Per slot, the rows routed to it.
    pub groups: Vec<Vec<u32>>,
    /// (cache, position) of each row.
    pub rows: Vec<(usize, usize)>,
    /// The row whose logits each item needs.
    pub last_rows: Vec<u32>,
    /// (cache, positions it must hold).
    pub reserve: Vec<(usize, usize)>,
}

impl<B: Backend> Model<B> {
    pub fn decode_state(&self) -> DecodeState<B> {
        let b = &self.b;
        let e = || b.empty();
        let cfg = &self.cfg;
        DecodeState {
            kv: b.kv_new(cfg.num_hidden_layers, cfg.kv_heads() * cfg.head_dim()),
            rope: Rope::new(b),
            x: e(),
            xn: e(),
            rstd: e(),
            q: e(),
            k: e(),
            v: e(),
            q_raw: e(),
            k_raw: e(),
            rstd_h: e(),
            attn: e(),
            tmp: e(),
            gate: e(),
            up: e(),
            act: e(),
            us: Vec::new(),
            lora: LoraScratch::new(b),
            last: e(),
            logits: e(),
            tokens: b.new_i32(&[]),
            pos: b.new_u32(&[]),
            groups: Vec::new(),
            rows: b.new_rows(&[]),
            last_idx: b.new_u32(&[]),
            blk: e(),
            logit_blocks: Vec::new(),
        }
    }

    /// Encodes the rows into their caches and returns the logits of each
    /// item's last row [items, vocab] (read back).
    pub fn decode(&self, st: &mut DecodeState<B>, db: &DecodeBatch) -> Result<Vec<B::F>> {
        let (b, cfg, w, adapters) = (&self.b, &self.cfg, &self.w, &self.adapters);
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let sh = attn_shape(cfg);
        let qw = sh.heads * hd;
        let n = db.tokens.len();
        // The index tensors first, rewritten in place.
        b.set_i32(&mut st.tokens, &db.tokens);
        b.set_u32(&mut st.pos, &db.pos);
        st.groups.resize_with(db.groups.len(), || b.new_u32(&[]));
        for (g, x) in st.groups.iter_mut().zip(&db.groups) {
            b.set_u32(g, x);
        }
        b.set_rows(&mut st.rows, &db.rows);
        b.set_u32(&mut st.last_idx, &db.last_rows);
        let max_pos = db.pos.iter().copied().max().unwrap_or(0) as usize + 1;
        st.rope.ensure(b, cfg, max_pos);
        for &(c, len) in &db.reserve {
            b.kv_reserve(&mut st.kv, c, len);
        }
        let (tokens, pos, groups, rows) = (&st.tokens, &st.pos, &st.groups, &st.rows);
        b.zeros(&mut st.x, n * d);
        b.embedding_forward(&mut st.x, &w.embed, tokens, d);
        for (l, layer) in w.layers.iter().enumerate() {
            let proj = |pr: Proj| &layer.proj[pr as usize];
            b.zeros(&mut st.xn, n * d);
            b.zeros(&mut st.rstd, n);
            b.rmsnorm_forward(&mut st.xn, &mut st.rstd, &st.x, &layer.input_norm, d, cfg.rms_norm_eps);
            routed_projection(b, cfg, adapters, groups, n, &mut st.q, &mut st.us, &st.xn, l, Proj::Q, proj(Proj::Q), &mut st.lora);
            routed_projection(b, cfg, adapters, groups, n, &mut st.k, &mut st.us, &st.xn, l, Proj::K, proj(Proj::K), &mut st.lora);
            routed_projection(b, cfg, adapters, groups, n, &mut st.v, &mut st.us, &st.xn, l, Proj::V, proj(Proj::V), &mut st.lora);
            if let Some((qn, kn)) = &layer.qk_norm {
                head_norm(b, &mut st.q, &mut st.q_raw, &mut st.rstd_h, qn, n, sh.heads, hd, cfg.rms_norm_eps);
                head_norm(b, &mut st.k, &mut st.k_raw, &mut st.rstd_h, kn, n, sh.kv_heads, hd, cfg.rms_norm_eps);
            }
            b.rope_apply(&mut st.q, pos, sh.heads, hd, &st.rope.cos, &st.rope.sin, false);
            b.rope_apply(&mut st.k, pos, sh.kv_heads, hd, &st.rope.cos, &st.rope.sin, false);
            b.kv_append(&mut st.kv, l, &st.k, &st.v, rows);
            b.zeros(&mut st.attn, n * qw);
            b.attention_cached(&mut st.attn, &st.q, &st.kv, l, rows, sh);
            routed_projection(b, cfg, adapters, groups, n, &mut st.tmp, &mut st.us, &st.attn, l, Proj::O, proj(Proj::O), &mut st.lora);
            b.add_assign(&mut st.x, &st.tmp);
            b.rmsnorm_forward(&mut st.xn, &mut st.rstd, &st.x, &layer.post_norm, d, cfg.rms_norm_eps);
            routed_projection(b, cfg, adapters, groups, n, &mut st.gate, &mut st.us, &st.xn, l, Proj::Gate, proj(Proj::Gate), &mut st.lora);
            routed_projection(b, cfg, adapters, groups, n, &mut st.up, &mut st.us, &st.xn, l, Proj::Up, proj(Proj::Up), &mut st.lora);
            b.zeros(&mut st.act, n * cfg.intermediate_size);
            b.swiglu_forward(&mut st.act, &st.gate, &st.up);
            routed_projection(b, cfg, adapters, groups, n, &mut st.tmp, &mut st.us, &st.act, l, Proj::Down, proj(Proj::Down), &mut st.lora);
            b.add_assign(&mut st.x, &st.tmp);
        }
        // Final norm and LM head only for each item's last row.
        let m = db.last_rows.len();
        b.gather_rows(&mut st.last, &st.x, &st.last_idx, d);
        b.zeros(&mut st.xn, m * d);
        b.zeros(&mut st.rstd, m);
        b.rmsnorm_forward(&mut st.xn, &mut st.rstd, &st.last, &w.norm, d, cfg.rms_norm_eps);
        let blocks = row_blocks(m, b.max_rows_per_block(v));
        let logits = if blocks.len() <= 1 {
            b.zeros(&mut st.logits, m * v);
            b.matmul(&mut st.logits, &st.xn, w.head(), m, v, d, false, true, false);
            b.download(&st.logits)
        } else {
            // Each block's logits in their own tensor, all read back at once.
            st.logit_blocks.resize_with(blocks.len(), || b.empty());
            for (&(r0, r), z) in blocks.iter().zip(st.logit_blocks.iter_mut()) {
                b.slice_rows(&mut st.blk, &st.xn, r0, r, d);
                b.zeros(z, r * v);
                b.matmul(z, &st.blk, w.head(), r, v, d, false, true, false);
            }
            let zs: Vec<&B::Buf> = st.logit_blocks.iter().collect();
            b.download_many(&zs).concat()
        };
        if logits.iter().any(|x| !x.as_f64().is_finite()) {
            return Err(DartError::NonFinite("logits are not finite while decoding".into()));
        }
        Ok(logits)
    }
}

