/**
 * Property 1. Disjoint storage: a step (or a tensor write) that updates one
 * adapter never changes another adapter's bytes.
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import {
  bitDiffs,
  caseArb,
  caseEngine,
  checkProperty,
  isAllZero,
  prng,
  routedSlots,
  seedArb,
  snapshot
} from "./support.ts"

const arb = caseArb(2, 3).chain((c) =>
  fc.record({
    c: fc.constant(c),
    // undefined = step every slot; otherwise a random subset
    stepSlots: fc.option(fc.subarray(c.specs.map((_, i) => i)), { nil: undefined }),
    lr: fc.double({ min: 1e-3, max: 0.1, noNaN: true }),
    weightDecay: fc.constantFrom(0, 0.01, 0.1),
    writeSlot: fc.integer({ min: 0, max: c.specs.length - 1 }),
    writeSeed: seedArb
  })
)

it("property 1: a step or write on one adapter never changes another adapter's bytes", async () => {
  await checkProperty("property 1", arb, async ({ c, lr, stepSlots, weightDecay, writeSeed, writeSlot }) => {
    const k = c.specs.length
    const engine = caseEngine(c)
    const before = snapshot(engine, k)
    await engine.forward(c.batch.tokens, c.batch.seqLens, c.routes)
    await engine.backward(c.dLdlogp)
    const grads = Array.from({ length: k }, (_, s) => engine.adapterGrads(s))
    await engine.step(stepSlots === undefined ? { lr, weightDecay } : { lr, weightDecay, slots: stepSlots })
    const after = snapshot(engine, k)

    const routed = routedSlots(c.batch.seqLens, c.routes)
    const stepped = new Set(stepSlots ?? c.specs.map((_, i) => i))
    for (let s = 0; s < k; s++) {
      if (!routed.has(s) || !stepped.has(s)) {
        expect(bitDiffs(after[s]!, before[s]!), `slot ${s} (routed ${routed.has(s)}, stepped ${stepped.has(s)})`)
          .toEqual([])
      } else if (!Object.values(grads[s]!).every(isAllZero)) {
        // not vacuous: a slot that got a non-zero gradient and was stepped moved
        expect(bitDiffs(after[s]!, before[s]!).length, `slot ${s} was updated`).toBeGreaterThan(0)
      }
    }

    // Overwriting every tensor of one slot leaves the other slots' bytes alone.
    const rand = prng(writeSeed)
    for (const [name, t] of Object.entries(after[writeSlot]!)) {
      engine.setAdapterTensor(writeSlot, name, Float32Array.from(t, () => rand() - 0.5))
    }
    const written = snapshot(engine, k)
    for (let s = 0; s < k; s++) {
      if (s !== writeSlot) expect(bitDiffs(written[s]!, after[s]!), `slot ${s} after writing slot ${writeSlot}`).toEqual([])
    }
  })
})
