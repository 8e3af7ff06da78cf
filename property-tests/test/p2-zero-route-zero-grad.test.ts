/**
 * Property 2. Zero route, zero gradient: an adapter that no position runs with
 * (writer convention: position p runs with routes[p+1], the last position of a
 * sequence with its own route; routes[start] never matters) gets exactly 0
 * in every gradient element after forward + backward, even when the ignored
 * routes[start] entries name it.
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import {
  adapterSpecsArb,
  batchArb,
  caseEngine,
  checkProperty,
  configArb,
  dLdlogpArb,
  isAllZero,
  liveRoutesArb,
  positionRoutes,
  routedSlots,
  seedArb
} from "./support.ts"

const arb = fc
  .record({ cfg: configArb, seed: seedArb, specs: adapterSpecsArb(1, 3) })
  .chain(({ cfg, seed, specs }) =>
    fc.record({
      cfg: fc.constant(cfg),
      seed: fc.constant(seed),
      specs: fc.constant(specs),
      live: fc.subarray(specs.map((_, i) => i)),
      // gradient accumulation over 1 or 2 forward/backward pairs
      batches: fc.array(batchArb(cfg.vocab_size), { minLength: 1, maxLength: 2 })
    })
  )
  .chain((c) =>
    fc.record({
      c: fc.constant(c),
      steps: fc.tuple(
        ...c.batches.map((b) =>
          fc.record({
            batch: fc.constant(b),
            routes: liveRoutesArb(b.seqLens, c.specs.length, c.live),
            dLdlogp: dLdlogpArb(b.tokens.length)
          })
        )
      )
    })
  )

it("property 2: an adapter with no routed position gets exactly zero gradients", async () => {
  let zeroChecked = 0
  await checkProperty("property 2", arb, async ({ c, steps }) => {
    const engine = caseEngine(c)
    const routed = new Set<number>()
    for (const { batch, dLdlogp, routes } of steps) {
      await engine.forward(batch.tokens, batch.seqLens, routes)
      await engine.backward(dLdlogp)
      for (const s of routedSlots(batch.seqLens, routes)) routed.add(s)
      // the helper agrees with the writer convention on the ignored entries
      expect(positionRoutes(batch.seqLens, routes).length).toBe(routes.length)
    }
    for (let s = 0; s < c.specs.length; s++) {
      if (routed.has(s)) continue
      zeroChecked++
      for (const [name, g] of Object.entries(engine.adapterGrads(s))) {
        expect(isAllZero(g), `slot ${s} ${name} has a non-zero gradient`).toBe(true)
      }
    }
  })
  console.log(`property 2: ${zeroChecked} unrouted slots checked`)
})
