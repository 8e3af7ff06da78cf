//! Batched generation with a KV cache, routed per token by role exactly as
//! training routes it, so that the logprobs recorded at rollout equal the
//! logprobs `Engine::forward` recomputes (property 8).
//!
//! A plan has one or more agents. Each agent reads the whole history with
//! its own KV cache; the route of a position in an agent's cache is the
//! agent's route for the role of the *next* token (the writer convention).
//! One agent (dart, joint, ...) = one cache and O(1) adapter switches;
//! several agents (two-agent, LEAS hybrids) = one cache each, brought up to
//! date (re-encoded) when that agent next writes.
use crate::batch::BASE_ROUTE;
use crate::engine::{Engine, EngineDecodeState};
use crate::error::{DartError, Result};
use crate::float::Float;
use crate::decode::DecodeBatch;
use crate::roles::{Role, RoleRules, RoleTracker, Transition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Routes per role (P, R, A, O) of each agent, and which agent writes R and A.
#[derive(Debug, Clone, PartialEq)]
pub struct GenPlan {
    pub agents: Vec<[i32; 4]>,
    pub writer_r: usize,
    pub writer_a: usize,
}

impl GenPlan {
    /// One agent, one cache: route by the role of each token.
    pub fn single(routes: [i32; 4]) -> Self {
        GenPlan { agents: vec![routes], writer_r: 0, writer_a: 0 }
    }

    /// Two agents, each reading everything through one route: the first
    /// writes R tokens, the second A tokens (two-agent and LEAS hybrids).
    pub fn two_agents(r_route: i32, a_route: i32) -> Self {
        GenPlan { agents: vec![[r_route; 4], [a_route; 4]], writer_r: 0, writer_a: 1 }
    }

    pub fn validate(&self, slots: usize) -> Result<()> {
        if self.agents.is_empty() {
            return Err(DartError::InvalidArgument("plan has no agents".into()));
        }
        for (i, a) in self.agents.iter().enumerate() {
            if let Some(&r) = a.iter().find(|&&r| r < BASE_ROUTE || r >= slots as i32) {
                return Err(DartError::UnknownSlot(format!("plan agent {i} routes to {r}, expected -1 (base) or 0..{slots}")));
            }
        }
        for (what, w) in [("writer of R", self.writer_r), ("writer of A", self.writer_a)] {
            if w >= self.agents.len() {
                return Err(DartError::InvalidArgument(format!("{what} = agent {w}, expected 0..{}", self.agents.len())));
            }
        }
        Ok(())
    }

    fn writer(&self, role: Role) -> usize {
        if role == Role::Action {
            self.writer_a
        } else {
            self.writer_r
        }
    }

    /// The route that writes a token of this role.
    pub fn writer_route(&self, role: Role) -> i32 {
        self.agents[self.writer(role)][role as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    pub eos: Vec<i32>,
    pub stop: Vec<Vec<i32>>,
    /// Pause a sequence when it closes a tool call (to run the tool).
    pub pause_on_tool_call: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { max_new_tokens: 64, temperature: 1.0, top_p: 1.0, top_k: 0, eos: vec![], stop: vec![], pause_on_tool_call: true }
    }
}

impl SampleOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(DartError::InvalidArgument(format!("temperature = {}, expected >= 0 (0 = greedy)", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(DartError::InvalidArgument(format!("topP = {}, expected 0 < topP <= 1", self.top_p)));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(DartError::InvalidArgument("a stop sequence is empty".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Still generating (only inside a call).
    Running,
    Eos,
    Stop,
    /// Wrote a closing tool-call tag: waiting for `extend` with the tool output.
    ToolCall,
    /// Hit this call's max_new_tokens.
    Length,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Running => "running",
            StopReason::Eos => "eos",
            StopReason::Stop => "stop",
            StopReason::ToolCall => "tool_call",
            StopReason::Length => "length",
        }
    }
}

pub struct Sequence<T> {
    _t: std::marker::PhantomData<T>,
    pub tokens: Vec<i32>,
    pub roles: Vec<Role>,
    /// Writer route of every token (routes[0] is never used).
    pub routes: Vec<i32>,
    /// Logprob of every model-written token under its route; 0 elsewhere.
    pub logprobs: Vec<f32>,
    pub stop: StopReason,
    /// Rows each agent's KV cache holds (cache id = seq * agents + agent).
    cached: Vec<usize>,
    tracker: RoleTracker,
    rng: ChaCha8Rng,
    /// Whether `generate` should continue it.
    active: bool,
}

/// What one `generate` call added to a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub seq: usize,
    pub tokens: Vec<i32>,
    pub roles: Vec<Role>,
    pub routes: Vec<i32>,
    pub logprobs: Vec<f32>,
    pub stop: StopReason,
}

pub struct Session<T: Float> {
    plan: GenPlan,
    rules: RoleRules,
    seed: u64,
    pub seqs: Vec<Sequence<T>>,
    /// KV caches and decode buffers on the engine's backend.
    state: EngineDecodeState<T>,
}

/// One sequence's pending rows for one agent's cache.
struct Item {
    seq: usize,
    agent: usize,
    start: usize,
    routes: Vec<i32>,
}

impl<T: Float> Session<T> {
    pub fn new(engine: &Engine<T>, plan: GenPlan, rules: RoleRules, seed: u64) -> Result<Self> {
        plan.validate(engine.num_adapters())?;
        Ok(Session { plan, rules, seed, seqs: Vec::new(), state: engine.decode_state() })
    }

    pub fn plan(&self) -> &GenPlan {
        &self.plan
    }

    /// Adds a sequence with its prompt (role P); returns its index.
    pub fn add_sequence(&mut self, engine: &Engine<T>, prompt: &[i32]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(DartError::Shape("prompt is empty, expected at least one token".into()));
        }
        let idx = self.seqs.len();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(idx as u64);
        let _ = engine;
        self.seqs.push(Sequence {
            _t: std::marker::PhantomData,
            tokens: Vec::new(),
            roles: Vec::new(),
            routes: Vec::new(),
            logprobs: Vec::new(),
            stop: StopReason::Running,
            cached: vec![0; self.plan.agents.len()],
            tracker: RoleTracker::new(self.rules.clone()),
            rng,
            active: true,
        });
        self.extend(engine, idx, prompt, Role::Prompt)?;
        Ok(idx)
    }

    /// Appends tokens not written by the model (prompt or tool output) and
    /// makes the sequence active again. They are encoded lazily by the next
    /// `generate`, together with everything else pending.
    pub fn extend(&mut self, engine: &Engine<T>, seq: usize, tokens: &[i32], role: Role) -> Result<()> {
        if role != Role::Prompt && role != Role::Observation {
            return Err(DartError::InvalidArgument(format!("extend role {role:?}, expected Prompt or Observation (the model writes R and A)")));
        }
        let vocab = engine.config().vocab_size;
        if let Some(&t) = tokens.iter().find(|&&t| t < 0 || t as usize >= vocab) {
            return Err(DartError::InvalidArgument(format!("token {t}, expected 0..{vocab}")));
        }
        let n = self.seqs.len();
        let route = self.plan.writer_route(role);
        let s = self.seqs.get_mut(seq).ok_or_else(|| DartError::InvalidArgument(format!("sequence {seq}, expected 0..{n}")))?;
        s.tracker.interrupt();
        for &t in tokens {
            s.tokens.push(t);
            s.roles.push(role);
            s.routes.push(route);
            s.logprobs.push(0.0);
        }
        s.active = true;
        s.stop = StopReason::Running;
        Ok(())
    }

    /// Marks a sequence as finished: `generate` skips it until it is extended.
    pub fn finish(&mut self, seq: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            s.active = false;
        }
    }

    /// Decodes every active sequence, all in one batch per step, until each
    /// stops; returns what each sequence gained in this call.
    pub fn generate(&mut self, engine: &Engine<T>, opts: &SampleOptions) -> Result<Vec<Generated>> {
        opts.validate()?;
        if self.plan.agents.iter().flatten().any(|&r| r >= engine.num_adapters() as i32) {
            return Err(DartError::UnknownSlot("the plan routes to a slot the engine no longer has".into()));
        }
        let active: Vec<usize> = (0..self.seqs.len()).filter(|&i| self.seqs[i].active).collect();
        let starts: Vec<usize> = active.iter().map(|&i| self.seqs[i].tokens.len()).collect();
        let pool = engine.pool();
        pool.install(|| -> Result<()> {
            let mut running: Vec<usize> = active.clone();
            let mut produced = vec![0usize; self.seqs.len()];
            while !running.is_empty() {
                let items: Vec<Item> = running.iter().map(|&i| self.pending_item(i)).collect();
                let logits = self.decode(engine, &items)?;
                let v = engine.config().vocab_size;
                // Sequences sample in parallel, each from its own RNG, so the
                // draw does not depend on the thread count.
                let mut rngs: Vec<&mut ChaCha8Rng> = Vec::with_capacity(running.len());
                let mut next = running.iter().peekable();
                for (i, s) in self.seqs.iter_mut().enumerate() {
                    if next.next_if_eq(&&i).is_some() {
                        rngs.push(&mut s.rng);
                    }
                }
                let picks: Vec<(i32, f32)> = rngs.into_par_iter().zip(logits.par_chunks(v)).map(|(rng, z)| sample(z, opts, rng)).collect();
                let mut still = Vec::with_capacity(running.len());
                for (&i, &(tok, logp)) in running.iter().zip(&picks) {
                    let s = &mut self.seqs[i];
                    let role = s.tracker.next_role();
                    s.tokens.push(tok);
                    s.roles.push(role);
                    s.routes.push(self.plan.writer_route(role));
                    s.logprobs.push(logp);
                    produced[i] += 1;
                    let tr = s.tracker.push(tok);
                    s.stop = if opts.eos.contains(&tok) {
                        StopReason::Eos
                    } else if opts.stop.iter().any(|st| s.tokens.ends_with(st)) {
                        StopReason::Stop
                    } else if tr == Transition::ClosedCall && opts.pause_on_tool_call {
                        StopReason::ToolCall
                    } else if produced[i] >= opts.max_new_tokens {
                        StopReason::Length
                    } else {
                        StopReason::Running
                    };
                    if s.stop == StopReason::Running {
                        still.push(i);
                    } else {
                        // Eos/Stop end it; ToolCall waits for `extend`; Length
                        // continues on the next call unless the caller finishes it.
                        s.active = s.stop == StopReason::Length;
                    }
                }
                running = still;
            }
            Ok(())
        })?;
        Ok(active
            .iter()
            .zip(starts)
            .map(|(&i, st)| {
                let s = &self.seqs[i];
                Generated {
                    seq: i,
                    tokens: s.tokens[st..].to_vec(),
                    roles: s.roles[st..].to_vec(),
                    routes: s.routes[st..].to_vec(),
                    logprobs: s.logprobs[st..].to_vec(),
                    stop: s.stop,
                }
            })
            .collect())
    }

    /// The rows of sequence `i` that the writer of its next token has not
    /// encoded yet, each with its route: the agent's route for the role of
    /// the token that follows the row.
    fn pending_item(&self, i: usize) -> Item {
        let s = &self.seqs[i];
        let next = s.tracker.next_role();
        let agent = self.plan.writer(next);
        let start = s.cached[agent];
        let routes = (start..s.tokens.len())
            .map(|p| {
                let role_after = if p + 1 < s.tokens.len() { s.roles[p + 1] } else { next };
                self.plan.agents[agent][role_after as usize]
            })
            .collect();
        Item { seq: i, agent, start, routes }
    }

    /// Encodes the pending rows of every item into its cache and returns the
    /// logits of each item's last row [items, vocab].
    fn decode(&mut self, engine: &Engine<T>, items: &[Item]) -> Result<Vec<T>> {
        let agents = self.plan.agents.len();
        // Rows of all items, in order, with their positions, caches and routes.
        let mut db = DecodeBatch {
            tokens: Vec::new(),
            pos: Vec::new(),
            groups: vec![Vec::new(); engine.num_adapters()],
            rows: Vec::new(),
            last_rows: Vec::new(),
            reserve: Vec::new(),
        };
        for it in items {
            let s = &self.seqs[it.seq];
            let cache = it.seq * agents + it.agent;
            for (j, p) in (it.start..s.tokens.len()).enumerate() {
                let r = db.tokens.len() as u32;
                db.tokens.push(s.tokens[p]);
                db.pos.push(p as u32);
                db.rows.push((cache, p));
                if it.routes[j] >= 0 {
                    db.groups[it.routes[j] as usize].push(r);
                }
            }
            db.last_rows.push(db.tokens.len() as u32 - 1);
            db.reserve.push((cache, s.tokens.len()));
        }
        let logits = engine.decode(&mut self.state, &db)?;
        for it in items {
            let s = &mut self.seqs[it.seq];
            s.cached[it.agent] = s.tokens.len();
        }
        Ok(logits)
    }
}

/// Samples a token from logits; returns it with its logprob under the
/// policy itself (temperature 1, no truncation), the quantity training
/// recomputes.
fn sample<T: Float>(z: &[T], o: &SampleOptions, rng: &mut ChaCha8Rng) -> (i32, f32) {
    // The log-sum-exp of ops::logprob, so the recorded logprob is the one
    // training recomputes.
    let lse = crate::ops::exp::logsumexp(z);
    let mt = crate::ops::exp::max(z);
    let logp = |t: usize| (z[t] - lse).as_f64() as f32;
    if o.temperature == 0.0 {
        // First index of the maximum (greedy needs no f64 copy of the logits).
        let t = z.iter().enumerate().fold(0, |b, (i, &x)| if x > z[b] { i } else { b });
        return (t as i32, logp(t));
    }
    let zf: Vec<f64> = z.iter().map(|x| x.as_f64()).collect();
    let m = mt.as_f64();
    // Candidates sorted by logit when truncating, else the whole vocabulary.
    let mut idx: Vec<usize> = (0..zf.len()).collect();
    if o.top_k > 0 || o.top_p < 1.0 {
        idx.sort_by(|&a, &b| zf[b].partial_cmp(&zf[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
        if o.top_k > 0 {
            idx.truncate(o.top_k.min(idx.len()));
        }
    }
    let mut p: Vec<f64> = idx.iter().map(|&i| ((zf[i] - m) / o.temperature).exp()).collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    if o.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = p.len();
        for (j, &x) in p.iter().enumerate() {
            acc += x;
            if acc >= o.top_p {
                keep = j + 1;
                break;
            }
        }
        idx.truncate(keep);
        p.truncate(keep);
        let t: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= t);
    }
    let u: f64 = rng.random::<f64>();
    let mut acc = 0.0;
    for (j, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return (idx[j] as i32, logp(idx[j]));
        }
    }
    let t = *idx.last().expect("vocabulary is not empty");
    (t as i32, logp(t))
}
