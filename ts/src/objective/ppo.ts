/**
 * The policy-gradient objective as a pure function from token logprobs to
 * dL/dlogp, the only thing the engine needs (engine.backward). Per trained
 * token t of sequence s (mask 1; roles P and O and padding have mask 0):
 *
 *   rho_t = exp(logp_t - oldLogp_t)
 *   ppo_t = -min(rho_t A_s, clip(rho_t, 1 - clipLow, 1 + clipHigh) A_s)
 *   k3_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          (>= 0, 0 at equality)
 *   L     = sum_t w_t (ppo_t + beta k3_t)
 *
 * with the aggregation weights w_t of verl's `loss_agg_mode`:
 *   token-mean            w_t = 1 / (trained tokens in the batch)
 *   seq-mean-token-sum    w_t = 1 / (sequences)
 *   seq-mean-token-mean   w_t = 1 / (sequences * trained tokens of s)
 * (sequences = those with at least one trained token). The reference logprobs
 * `ref` come from the frozen base (every token routed to base), so no second
 * model is needed. clipHigh > clipLow is DAPO's clip-higher.
 *
 *   dL/dlogp_t = w_t (dppo_t + beta (1 - exp(ref_t - logp_t)))
 *   dppo_t     = -A_s rho_t where the unclipped term is the minimum, else 0
 *
 * Pure: no addon, no Effect; the properties are in ts/test/objective.test.ts.
 */
import { Schema } from "effect"

export const Aggregation = Schema.Literals(["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
export type Aggregation = typeof Aggregation.Type

const Fraction = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThan(1))

export const ObjectiveConfig = Schema.Struct({
  /** Lower PPO clip range: rho below 1 - clipLow is clipped (default 0.2). */
  clipLow: Fraction,
  /** Upper PPO clip range: rho above 1 + clipHigh is clipped (default 0.2; DAPO uses 0.28). */
  clipHigh: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(10)),
  /** Weight of the k3 KL to the frozen base (default 0.001; 0 = no KL, no reference pass). */
  klBeta: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(10)),
  aggregation: Aggregation
})
export type ObjectiveConfig = typeof ObjectiveConfig.Type

export const defaultObjectiveConfig: ObjectiveConfig = { clipLow: 0.2, clipHigh: 0.2, klBeta: 0.001, aggregation: "token-mean" }

export interface ObjectiveInput {
  /** Current logprob of every token (the writer layout of engine.forward). */
  readonly logp: ArrayLike<number>
  /** Logprob at rollout (the behaviour policy). */
  readonly oldLogp: ArrayLike<number>
  /** Logprob under the frozen base; required when klBeta > 0. */
  readonly refLogp?: ArrayLike<number>
  /** 1 where the token is trained (its role carries loss), 0 elsewhere. */
  readonly mask: ArrayLike<number>
  /** The sequence of each token (its index in `advantages`). */
  readonly seq: ArrayLike<number>
  /** One advantage per sequence. */
  readonly advantages: ArrayLike<number>
  /**
   * The aggregation weight of each token, when this input is one
   * micro-batch of a larger batch: the slice of `aggregationWeights` over
   * the whole batch, so that the micro-batches' dL/dlogp add up to the
   * whole batch's exactly (gradient accumulation). Default: the weights of
   * this input alone.
   */
  readonly weights?: ArrayLike<number>
}

export interface ObjectiveOutput {
  /** dL/dlogp per token, for engine.backward (0 where mask is 0). */
  readonly dLdlogp: Float64Array
  readonly loss: number
  /** Weighted mean of the k3 KL over trained tokens (same weights as the loss). */
  readonly kl: number
  /** Fraction of trained tokens whose gradient the clip removed. */
  readonly clipFraction: number
  /** Mean importance ratio over trained tokens (1 on policy). */
  readonly meanRatio: number
  readonly trainedTokens: number
}

const check = (input: ObjectiveInput, config: ObjectiveConfig): number => {
  const n = input.logp.length
  for (const [name, arr] of [["oldLogp", input.oldLogp], ["mask", input.mask], ["seq", input.seq]] as const) {
    if (arr.length !== n) throw new RangeError(`${name} has ${arr.length} entries, expected ${n} (one per token, as logp)`)
  }
  if (config.klBeta > 0) {
    if (input.refLogp === undefined) throw new RangeError("klBeta > 0 needs refLogp (the frozen base's logprobs)")
    if (input.refLogp.length !== n) throw new RangeError(`refLogp has ${input.refLogp.length} entries, expected ${n}`)
  }
  for (let t = 0; t < n; t++) {
    const m = input.mask[t]!
    if (m !== 0 && m !== 1) throw new RangeError(`mask[${t}] = ${m}, expected 0 or 1`)
    if (m === 0) continue
    const s = input.seq[t]!
    if (!Number.isInteger(s) || s < 0 || s >= input.advantages.length) {
      throw new RangeError(`seq[${t}] = ${s}, expected an index into advantages (0..${input.advantages.length - 1})`)
    }
    for (const [name, arr] of [["logp", input.logp], ["oldLogp", input.oldLogp], ["advantages", [input.advantages[s]!]]] as const) {
      const v = name === "advantages" ? arr[0]! : arr[t]!
      if (!Number.isFinite(v)) throw new RangeError(`${name}${name === "advantages" ? `[${s}]` : `[${t}]`} = ${v}, expected a finite number`)
    }
  }
  return n
}

/** The aggregation weight of each token (0 where mask is 0). */
export const aggregationWeights = (mask: ArrayLike<number>, seq: ArrayLike<number>, aggregation: Aggregation): Float64Array => {
  const n = mask.length
  const perSeq = new Map<number, number>()
  let total = 0
  for (let t = 0; t < n; t++) {
    if (mask[t] === 1) {
      perSeq.set(seq[t]!, (perSeq.get(seq[t]!) ?? 0) + 1)
      total++
    }
  }
  const w = new Float64Array(n)
  const seqs = perSeq.size
  for (let t = 0; t < n; t++) {
    if (mask[t] !== 1) continue
    w[t] = aggregation === "token-mean" ? 1 / total : aggregation === "seq-mean-token-sum" ? 1 / seqs : 1 / (seqs * perSeq.get(seq[t]!)!)
  }
  return w
}

/** The loss, its statistics and dL/dlogp (see the module comment). */
export const policyObjective = (input: ObjectiveInput, config: ObjectiveConfig = defaultObjectiveConfig): ObjectiveOutput => {
  const n = check(input, config)
  if (input.weights !== undefined && input.weights.length !== n) {
    throw new RangeError(`weights has ${input.weights.length} entries, expected ${n}`)
  }
  const w = input.weights ?? aggregationWeights(input.mask, input.seq, config.aggregation)
  const grad = new Float64Array(n)
  let loss = 0
  let kl = 0
  let clipped = 0
  let ratioSum = 0
  let trained = 0
  const lo = 1 - config.clipLow
  const hi = 1 + config.clipHigh
  for (let t = 0; t < n; t++) {
    if (input.mask[t] !== 1) continue
    trained++
    const a = input.advantages[input.seq[t]!]!
    const rho = Math.exp(input.logp[t]! - input.oldLogp[t]!)
    ratioSum += rho
    const clippedRho = Math.min(Math.max(rho, lo), hi)
    // min(rho A, clip(rho) A) is the clipped term exactly when the ratio is
    // outside the trust region in the direction the advantage pushes; then
    // the gradient is 0. Decided on rho and the sign of A (not by comparing
    // the two products, which round alike for tiny A).
    const useClipped = (a > 0 && rho > hi) || (a < 0 && rho < lo)
    loss += w[t]! * -((useClipped ? clippedRho : rho) * a)
    let g = useClipped ? 0 : -a * rho
    if (useClipped) clipped++
    if (config.klBeta > 0) {
      const d = input.refLogp![t]! - input.logp[t]!
      // expm1 keeps k3 accurate (and >= 0) where d is tiny; plain
      // exp(d) - d - 1 cancels to -1e-16 there.
      const k3 = Math.max(0, Math.expm1(d) - d)
      kl += w[t]! * k3
      loss += w[t]! * config.klBeta * k3
      g += -config.klBeta * Math.expm1(d)
    }
    grad[t] = w[t]! * g
  }
  return { dLdlogp: grad, loss, kl, clipFraction: trained === 0 ? 0 : clipped / trained, meanRatio: trained === 0 ? 1 : ratioSum / trained, trainedTokens: trained }
}
