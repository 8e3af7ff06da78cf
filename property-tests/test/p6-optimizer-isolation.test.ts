/**
 * Property 6. Optimizer isolation: over two steps (step 1 routes over every
 * slot, step 2 only over a random subset), a slot that received no token in
 * step 2 keeps its parameters AND its AdamW state (exp_avg, exp_avg_sq,
 * step) bit for bit, even with weight decay (a slot receives a token when a
 * position routed to it predicts one: a sequence's last position does not); a slot that received tokens
 * advanced its step count and, when its gradient or moments were non-zero,
 * moved its parameters.
 */
import fc from "fast-check"
import type { StepReport } from "@dart-rl/node"
import { expect, it } from "vitest"
import {
  adapterSpecsArb,
  batchArb,
  bitDiffs,
  checkProperty,
  configArb,
  dLdlogpArb,
  caseEngine,
  isAllZero,
  liveRoutesArb,
  numRuns,
  predictingRoutes,
  routesArb,
  seedArb
} from "./support.ts"

const arb = fc
  .record({ cfg: configArb, seed: seedArb, specs: adapterSpecsArb(2, 3) })
  .chain((c) => {
    const k = c.specs.length
    return fc.record({
      c: fc.constant(c),
      b1: batchArb(c.cfg.vocab_size),
      b2: batchArb(c.cfg.vocab_size),
      live2: fc.subarray(c.specs.map((_, i) => i)),
      lr: fc.double({ min: 1e-3, max: 0.1, noNaN: true }),
      weightDecay: fc.constantFrom(0, 0.01, 0.1),
      k: fc.constant(k)
    })
  })
  .chain((x) =>
    fc.record({
      x: fc.constant(x),
      r1: routesArb(x.b1.tokens.length, x.k),
      d1: dLdlogpArb(x.b1.tokens.length),
      r2: liveRoutesArb(x.b2.seqLens, x.k, x.live2),
      d2: dLdlogpArb(x.b2.tokens.length)
    })
  )

it("property 6: a step keeps the parameters and optimizer state of slots without tokens bit for bit", async () => {
  let nonZeroMoments = 0
  await checkProperty("property 6", arb, async ({ d1, d2, r1, r2, x }) => {
    const { b1, b2, c, k, lr, weightDecay } = x
    const engine = caseEngine(c)
    await engine.forward(b1.tokens, b1.seqLens, r1)
    await engine.backward(d1)
    const rep1: StepReport = await engine.step({ lr, weightDecay })
    // A slot receives tokens when a position routed to it predicts one.
    const used1 = new Set(Array.from(predictingRoutes(b1.seqLens, r1)).filter((r) => r >= 0))
    for (const r of rep1.slots) expect(r.updated, `step 1 slot ${r.slot}`).toBe(used1.has(r.slot))

    await engine.forward(b2.tokens, b2.seqLens, r2)
    await engine.backward(d2)
    const params = Array.from({ length: k }, (_, s) => engine.adapterTensors(s))
    const state = Array.from({ length: k }, (_, s) => engine.optimizerState(s))
    const grads = Array.from({ length: k }, (_, s) => engine.adapterGrads(s))
    const rep2: StepReport = await engine.step({ lr, weightDecay })

    const pr = predictingRoutes(b2.seqLens, r2)
    const used2 = new Set(Array.from(pr).filter((r) => r >= 0))
    for (let s = 0; s < k; s++) {
      const report = rep2.slots.find((r) => r.slot === s)!
      const p = engine.adapterTensors(s)
      const o = engine.optimizerState(s)
      expect(report.tokens, `slot ${s} tokens`).toBe(pr.filter((r) => r === s).length)
      if (!used2.has(s)) {
        expect(report.updated, `slot ${s} updated`).toBe(false)
        expect(bitDiffs(p, params[s]!), `slot ${s} parameters`).toEqual([])
        expect(bitDiffs(o, state[s]!), `slot ${s} optimizer state`).toEqual([])
        if (Object.entries(o).some(([n, t]) => n !== "step" && !isAllZero(t))) nonZeroMoments++
      } else {
        expect(report.updated, `slot ${s} updated`).toBe(true)
        expect(o["step"]![0], `slot ${s} step count`).toBe(state[s]!["step"]![0]! + 1)
        const moved = Object.values(grads[s]!).some((g) => !isAllZero(g)) ||
          Object.entries(state[s]!).some(([n, t]) => n.endsWith(".exp_avg") && !isAllZero(t))
        if (moved) expect(bitDiffs(p, params[s]!).length, `slot ${s} parameters moved`).toBeGreaterThan(0)
      }
    }
  })
  console.log(`property 6: ${nonZeroMoments} idle slots checked with non-zero moments`)
  if (numRuns >= 50) expect(nonZeroMoments).toBeGreaterThan(0)
})
