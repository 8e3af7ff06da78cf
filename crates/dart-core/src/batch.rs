//! A packed batch (sequences end to end, no padding) and its routing: the
//! writer convention of docs/engine-api.md turned into per-position routes
//! and per-slot row lists.
use crate::error::{DartError, Result};

pub const BASE_ROUTE: i32 = -1;

#[derive(Debug, Clone, Default)]
pub struct Packed {
    /// (start, len) of each sequence.
    pub seqs: Vec<(usize, usize)>,
    /// Position of each token within its sequence (RoPE restarts per sequence).
    pub pos: Vec<u32>,
    /// Target token of each position (the next token), -1 at a sequence end.
    pub targets: Vec<i32>,
    /// Route each position runs with: the writer of the next token.
    pub pos_routes: Vec<i32>,
    /// For each slot, the positions routed to it (ascending).
    pub groups: Vec<Vec<u32>>,
    pub max_len: usize,
}

impl Packed {
    pub fn new(tokens: &[i32], seq_lens: &[i32], routes: &[i32], vocab: usize, slots: usize) -> Result<Self> {
        let n = tokens.len();
        if routes.len() != n {
            return Err(DartError::Shape(format!("routes has {} entries, expected one per token ({n})", routes.len())));
        }
        if seq_lens.is_empty() {
            return Err(DartError::Shape("seqLens is empty, expected at least one sequence".into()));
        }
        let mut seqs = Vec::with_capacity(seq_lens.len());
        let mut start = 0usize;
        for (i, &l) in seq_lens.iter().enumerate() {
            if l < 1 {
                return Err(DartError::Shape(format!("seqLens[{i}] = {l}, expected >= 1")));
            }
            seqs.push((start, l as usize));
            start += l as usize;
        }
        if start != n {
            return Err(DartError::Shape(format!("seqLens sum to {start}, expected tokens.length = {n}")));
        }
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t < 0 || t as usize >= vocab) {
            return Err(DartError::InvalidArgument(format!("tokens[{i}] = {t}, expected 0..{vocab} (the vocabulary size)")));
        }
        if let Some((i, &r)) = routes.iter().enumerate().find(|(_, &r)| r < BASE_ROUTE || r >= slots as i32) {
            return Err(DartError::UnknownSlot(format!(
                "routes[{i}] = {r}, expected -1 (base) or a slot in 0..{slots} (the adapters added)"
            )));
        }
        let mut pos = vec![0u32; n];
        let mut targets = vec![-1i32; n];
        let mut pos_routes = vec![BASE_ROUTE; n];
        let mut groups = vec![Vec::new(); slots];
        let mut max_len = 0;
        for &(s, l) in &seqs {
            max_len = max_len.max(l);
            for i in 0..l {
                let p = s + i;
                pos[p] = i as u32;
                let last = i + 1 == l;
                targets[p] = if last { -1 } else { tokens[p + 1] };
                pos_routes[p] = if last { routes[p] } else { routes[p + 1] };
                if pos_routes[p] >= 0 {
                    groups[pos_routes[p] as usize].push(p as u32);
                }
            }
        }
        Ok(Packed { seqs, pos, targets, pos_routes, groups, max_len })
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
}
