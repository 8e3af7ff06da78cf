/**
 * The objective properties (docs/design.md, "Objective properties") with
 * fast-check alone: GRPO advantages sum to zero per group; on-policy
 * dL/dlogp equals -A/N; clipping zeroes the gradient outside the trust
 * region in the right direction and only there; k3 >= 0 and 0 at equality;
 * dL/dlogp is the derivative of the loss (central differences); masked
 * tokens get exactly 0; aggregation weights.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import fc from "fast-check"
import { aggregationWeights, groupAdvantages, ObjectiveConfig, policyObjective, type ObjectiveInput } from "../src/objective/index.ts"

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 100)
const run = (name: string, prop: fc.IPropertyWithHooks<any> | fc.IProperty<any>) => {
  fc.assert(prop, { numRuns: NUM_RUNS })
  console.log(`property "${name}": ${NUM_RUNS} cases`)
}

const reward = fc.double({ min: -5, max: 5, noNaN: true })
const logp = fc.double({ min: -8, max: -0.01, noNaN: true })

/** A batch: sequences of 1..6 tokens, a mask, advantages, logprobs near each other. */
const batch = fc
  .array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 5 })
  .chain((lens) => {
    const n = lens.reduce((a, b) => a + b, 0)
    const seq = lens.flatMap((l, s) => Array.from({ length: l }, () => s))
    return fc.record({
      seq: fc.constant(seq),
      mask: fc.array(fc.constantFrom(0, 1), { minLength: n, maxLength: n }),
      advantages: fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: lens.length, maxLength: lens.length }),
      oldLogp: fc.array(logp, { minLength: n, maxLength: n }),
      delta: fc.array(fc.double({ min: -0.5, max: 0.5, noNaN: true }), { minLength: n, maxLength: n }),
      refDelta: fc.array(fc.double({ min: -0.5, max: 0.5, noNaN: true }), { minLength: n, maxLength: n })
    })
  })
  .map((b) => ({
    seq: b.seq,
    mask: b.mask,
    advantages: b.advantages,
    oldLogp: b.oldLogp,
    logp: b.oldLogp.map((x, i) => x + b.delta[i]!),
    refLogp: b.oldLogp.map((x, i) => x + b.refDelta[i]!)
  }))

const config = fc.record({
  clipLow: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
  clipHigh: fc.double({ min: 0.05, max: 0.8, noNaN: true }),
  klBeta: fc.constantFrom(0, 0.001, 0.1),
  aggregation: fc.constantFrom("token-mean" as const, "seq-mean-token-sum" as const, "seq-mean-token-mean" as const)
})

describe("GRPO advantages", () => {
  it("sum to zero in every group (GRPO and Dr.GRPO); Dr.GRPO is reward minus the group mean", () => {
    run(
      "advantages sum to zero per group",
      fc.property(fc.array(fc.tuple(reward, fc.integer({ min: 0, max: 4 })), { minLength: 1, maxLength: 40 }), fc.boolean(), (pairs, scaleByStd) => {
        const rewards = pairs.map((p) => p[0])
        const groups = pairs.map((p) => p[1])
        const a = groupAdvantages(rewards, groups, { scaleByStd, eps: 1e-6 })
        for (const g of new Set(groups)) {
          const idx = groups.flatMap((x, i) => (x === g ? [i] : []))
          const sum = idx.reduce((s, i) => s + a[i]!, 0)
          expect(Math.abs(sum)).toBeLessThan(1e-6 * idx.length * (1 + Math.max(...idx.map((i) => Math.abs(a[i]!)))))
          if (!scaleByStd) {
            const mean = idx.reduce((s, i) => s + rewards[i]!, 0) / idx.length
            for (const i of idx) expect(a[i]!).toBeCloseTo(rewards[i]! - mean, 9)
          }
        }
      })
    )
  })

  it("examples: a group of equal rewards gets 0; [0, 1] gets -1, +1", () => {
    expect(Array.from(groupAdvantages([2, 2, 2], [0, 0, 0]))).toEqual([0, 0, 0])
    const a = groupAdvantages([0, 1], ["q", "q"])
    expect(a[0]!).toBeCloseTo(-1, 5)
    expect(a[1]!).toBeCloseTo(1, 5)
    expect(() => groupAdvantages([1, Number.NaN], [0, 0])).toThrow("rewards[1] = NaN")
    expect(() => groupAdvantages([1], [0, 0])).toThrow("one group label per reward")
  })
})

describe("policy objective", () => {
  it("on policy (ratio 1, no KL, token-mean) dL/dlogp = -A/N on trained tokens, 0 elsewhere", () => {
    run(
      "on-policy gradient is -A/N",
      fc.property(batch, (b) => {
        const out = policyObjective({ ...b, logp: b.oldLogp }, { clipLow: 0.2, clipHigh: 0.2, klBeta: 0, aggregation: "token-mean" })
        const n = b.mask.filter((m) => m === 1).length
        b.mask.forEach((m, t) => {
          expect(out.dLdlogp[t]).toBeCloseTo(m === 1 ? -b.advantages[b.seq[t]!]! / n : 0, 12)
        })
        expect(out.clipFraction).toBe(0)
        if (n > 0) expect(out.meanRatio).toBeCloseTo(1, 12)
      })
    )
  })

  it("masked tokens (roles P, O) get exactly 0, whatever their logprobs", () => {
    run(
      "masked tokens get 0",
      fc.property(batch, config, (b, c) => {
        const out = policyObjective(b, c)
        b.mask.forEach((m, t) => {
          if (m === 0) expect(Object.is(out.dLdlogp[t], 0)).toBe(true)
        })
      })
    )
  })

  it("clipping zeroes the gradient outside the trust region in the advantage's direction, and only there", () => {
    run(
      "clip zeroes the gradient in the right direction",
      fc.property(batch, config, (b, c) => {
        const out = policyObjective(b, { ...c, klBeta: 0 })
        const w = aggregationWeights(b.mask, b.seq, c.aggregation)
        b.mask.forEach((m, t) => {
          if (m === 0) return
          const a = b.advantages[b.seq[t]!]!
          const rho = Math.exp(b.logp[t]! - b.oldLogp[t]!)
          const outside = (a > 0 && rho > 1 + c.clipHigh) || (a < 0 && rho < 1 - c.clipLow)
          if (outside) expect(out.dLdlogp[t]).toBe(0)
          // inside (or pushed back toward) the region: the ordinary policy gradient -w A rho
          else expect(Math.abs(out.dLdlogp[t]! + w[t]! * a * rho)).toBeLessThanOrEqual(1e-12 * Math.abs(w[t]! * a * rho) + 1e-300)
        })
      })
    )
  })

  it("k3 KL is >= 0 and 0 at equality", () => {
    run(
      "k3 >= 0, 0 at equality",
      fc.property(batch, (b) => {
        const c = { clipLow: 0.2, clipHigh: 0.2, klBeta: 1, aggregation: "token-mean" as const }
        expect(policyObjective(b, c).kl).toBeGreaterThanOrEqual(0)
        const same = policyObjective({ ...b, refLogp: b.logp }, c)
        expect(same.kl).toBe(0)
      })
    )
  })

  it("dL/dlogp is the derivative of the loss (central differences away from the clip boundary)", () => {
    const h = 1e-6
    run(
      "gradient equals finite differences",
      fc.property(batch, config, (b, c) => {
        const out = policyObjective(b, c)
        b.mask.forEach((m, t) => {
          if (m === 0) return
          const rho = Math.exp(b.logp[t]! - b.oldLogp[t]!)
          // Skip tokens within 1e-4 of a kink of the clipped objective.
          if (Math.abs(rho - (1 + c.clipHigh)) < 1e-4 || Math.abs(rho - (1 - c.clipLow)) < 1e-4) return
          const at = (x: number) => {
            const logp = [...b.logp]
            logp[t] = x
            return policyObjective({ ...b, logp } as ObjectiveInput, c).loss
          }
          const fd = (at(b.logp[t]! + h) - at(b.logp[t]! - h)) / (2 * h)
          expect(Math.abs(fd - out.dLdlogp[t]!)).toBeLessThan(1e-6 * (1 + Math.abs(fd)))
        })
      })
    )
  })

  it("micro-batches with the whole batch's weights add up to the whole batch exactly (gradient accumulation)", () => {
    run(
      "micro-batch accumulation",
      fc.property(batch, config, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), (b, c, cuts) => {
        const whole = policyObjective(b, c)
        const weights = aggregationWeights(b.mask, b.seq, c.aggregation)
        const sequences = Math.max(...b.seq) + 1
        // Micro-batches of whole sequences: a cut after sequence s where cuts[s].
        const groups: Array<Array<number>> = [[]]
        for (let s = 0; s < sequences; s++) {
          groups[groups.length - 1]!.push(s)
          if (cuts[s] && s < sequences - 1) groups.push([])
        }
        const dL = new Float64Array(b.seq.length)
        let loss = 0
        for (const g of groups) {
          const idx = b.seq.flatMap((s, t) => (g.includes(s) ? [t] : []))
          const pick = <T>(xs: ReadonlyArray<T>) => idx.map((t) => xs[t]!)
          const out = policyObjective({
            logp: pick(b.logp),
            oldLogp: pick(b.oldLogp),
            refLogp: pick(b.refLogp),
            mask: pick(b.mask),
            seq: idx.map((t) => g.indexOf(b.seq[t]!)),
            advantages: g.map((s) => b.advantages[s]!),
            weights: idx.map((t) => weights[t]!)
          }, c)
          idx.forEach((t, k) => (dL[t] = out.dLdlogp[k]!))
          loss += out.loss
        }
        for (let t = 0; t < dL.length; t++) expect(dL[t]).toBe(whole.dLdlogp[t])
        expect(Math.abs(loss - whole.loss)).toBeLessThan(1e-12 * (1 + Math.abs(whole.loss)))
      })
    )
  })

  it("aggregation weights: token-mean sums to 1, seq-mean-token-sum gives 1/S per token, seq-mean-token-mean sums to 1/S per sequence", () => {
    run(
      "aggregation weights",
      fc.property(batch, (b) => {
        const trainedSeqs = new Set(b.seq.filter((_, t) => b.mask[t] === 1))
        const s = trainedSeqs.size
        if (s === 0) return
        const sum = (w: Float64Array) => w.reduce((x, y) => x + y, 0)
        expect(sum(aggregationWeights(b.mask, b.seq, "token-mean"))).toBeCloseTo(1, 12)
        aggregationWeights(b.mask, b.seq, "seq-mean-token-sum").forEach((w, t) => expect(w).toBeCloseTo(b.mask[t] === 1 ? 1 / s : 0, 12))
        const w = aggregationWeights(b.mask, b.seq, "seq-mean-token-mean")
        for (const q of trainedSeqs) {
          expect(b.seq.reduce((acc, x, t) => acc + (x === q ? w[t]! : 0), 0)).toBeCloseTo(1 / s, 12)
        }
      })
    )
  })

  it("bad inputs and configs name what is wrong", () => {
    const base = { logp: [-1, -2], oldLogp: [-1, -2], mask: [1, 1], seq: [0, 0], advantages: [1] }
    expect(() => policyObjective({ ...base, oldLogp: [-1] })).toThrow("oldLogp has 1 entries, expected 2")
    expect(() => policyObjective(base)).toThrow("klBeta > 0 needs refLogp")
    expect(() => policyObjective({ ...base, seq: [0, 3] }, { clipLow: 0.2, clipHigh: 0.2, klBeta: 0, aggregation: "token-mean" })).toThrow("seq[1] = 3")
    expect(() => policyObjective({ ...base, mask: [1, 2] }, { clipLow: 0.2, clipHigh: 0.2, klBeta: 0, aggregation: "token-mean" })).toThrow("mask[1] = 2")
    const decode = Schema.decodeUnknownSync(ObjectiveConfig)
    expect(() => decode({ clipLow: 1.5, clipHigh: 0.2, klBeta: 0, aggregation: "token-mean" })).toThrow(/clipLow/)
    expect(() => decode({ clipLow: 0.2, clipHigh: 0.2, klBeta: 0, aggregation: "mean" })).toThrow(/aggregation/)
  })
})
