//! A packed batch (sequences end to end, no padding) and the writer
//! convention of docs/engine-api.md, all in one type: the caller speaks of
//! tokens (route t = the writer of token t, logprob t = log p(token t |
//! tokens before it), dL/dlogp t likewise), the model computes per position
//! (position p predicts token p+1 and runs with that token's writer's
//! adapter). `Packed` turns the one into the other both ways.
use crate::error::{DartError, Result};
use crate::float::Float;

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
    /// The positions the LM head runs on (ascending): those with a target
    /// whose logprob is wanted (all of them unless `want` narrowed it).
    pub head_rows: Vec<u32>,
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
        let head_rows = (0..n as u32).filter(|&p| targets[p as usize] >= 0).collect();
        Ok(Packed { seqs, pos, targets, pos_routes, groups, max_len, head_rows })
    }

    /// Narrows the LM head to the tokens whose logprob is wanted (writer
    /// layout: `wanted[t]` = 1 for token t's logprob, 0 for not). The others
    /// get logprob 0 and no gradient through it; every position still runs
    /// through the layers, so the wanted ones see the same context.
    pub fn want(mut self, wanted: &[u8]) -> Result<Self> {
        let n = self.len();
        if wanted.len() != n {
            return Err(DartError::Shape(format!("logprobMask has {} entries, expected one per token ({n})", wanted.len())));
        }
        if let Some((i, &w)) = wanted.iter().enumerate().find(|(_, &w)| w > 1) {
            return Err(DartError::InvalidArgument(format!("logprobMask[{i}] = {w}, expected 0 (not wanted) or 1 (wanted)")));
        }
        self.head_rows.retain(|&p| wanted[p as usize + 1] == 1);
        Ok(self)
    }

    /// Per-position logprobs (position p predicts token p+1) to the writer
    /// layout: token t's logprob, 0 at each sequence's first token.
    pub fn to_writer<T: Float>(&self, per_position: &[T]) -> Vec<T> {
        let mut out = vec![T::zero(); self.len()];
        for (p, &t) in self.targets.iter().enumerate() {
            if t >= 0 {
                out[p + 1] = per_position[p];
            }
        }
        out
    }

    /// dL/dlogp in the writer layout to the per-position upstream gradient
    /// (0 at each sequence's last position, which predicts nothing).
    pub fn from_writer<T: Float>(&self, per_token: &[T]) -> Vec<T> {
        self.targets.iter().enumerate().map(|(p, &t)| if t >= 0 { per_token[p + 1] } else { T::zero() }).collect()
    }

    /// Tokens each slot predicts in this batch: its routed positions that
    /// have a target (a sequence's last position predicts nothing).
    pub fn predicted_per_slot(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.iter().filter(|&&p| self.targets[p as usize] >= 0).count()).collect()
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sequences [a b c | d e]: routes are per token (writer of the
    /// token); position p runs with the writer of token p+1.
    #[test]
    fn writer_convention_both_ways() {
        let tokens = [5, 6, 7, 8, 9];
        let routes = [-1, 0, 1, -1, 1];
        let p = Packed::new(&tokens, &[3, 2], &routes, 10, 2).unwrap();
        assert_eq!(p.targets, vec![6, 7, -1, 9, -1]);
        assert_eq!(p.pos, vec![0, 1, 2, 0, 1]);
        // last position of a sequence keeps its own token's route
        assert_eq!(p.pos_routes, vec![0, 1, 1, 1, 1]);
        assert_eq!(p.groups, vec![vec![0], vec![1, 2, 3, 4]]);
        assert_eq!(p.predicted_per_slot(), vec![1, 2]);
        let per_pos = [0.1, 0.2, 0.3, 0.4, 0.5];
        assert_eq!(p.to_writer(&per_pos), vec![0.0, 0.1, 0.2, 0.0, 0.4]);
        let per_tok = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(p.from_writer(&per_tok), vec![2.0, 3.0, 0.0, 5.0, 0.0]);
        assert_eq!(p.head_rows, vec![0, 1, 3]);
        // Only tokens 2 and 4 wanted: positions 1 and 3 predict them.
        let w = p.clone().want(&[1, 0, 1, 1, 1]).unwrap();
        assert_eq!(w.head_rows, vec![1, 3]);
        assert_eq!(w.targets, p.targets, "targets (and so the slots' token counts) stay");
        let e = p.clone().want(&[1, 0, 2, 1, 1]).unwrap_err().to_string();
        assert!(e.contains("logprobMask[2] = 2"), "{e}");
        let e = p.want(&[1, 0]).unwrap_err().to_string();
        assert!(e.contains("logprobMask has 2 entries"), "{e}");
    }

    #[test]
    fn bad_inputs_name_the_entry() {
        let e = Packed::new(&[1, 2], &[2], &[0, 3], 10, 2).unwrap_err().to_string();
        assert!(e.contains("routes[1] = 3"), "{e}");
        let e = Packed::new(&[1, 2], &[1], &[0, 0], 10, 2).unwrap_err().to_string();
        assert!(e.contains("seqLens sum to 1"), "{e}");
        let e = Packed::new(&[1, 12], &[2], &[0, 0], 10, 2).unwrap_err().to_string();
        assert!(e.contains("tokens[1] = 12"), "{e}");
    }
}
