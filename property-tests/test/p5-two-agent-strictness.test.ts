/**
 * Property 5. Two-agent strictness: pass 1 routes every token to the reasoning
 * slot (0) and back-propagates dL/dlogp masked to R tokens; pass 2 routes
 * every token to the tool slot (1) and back-propagates dL/dlogp masked to A
 * tokens (gradients accumulate over both passes). The tool adapter's gradient
 * is bitwise unchanged when the R tokens' dL/dlogp change, and the reasoning
 * adapter's gradient when the A tokens' dL/dlogp change.
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import {
  adapterSpecArb,
  batchArb,
  bitDiffs,
  checkProperty,
  configArb,
  dLdlogpArb,
  type Engine,
  makeEngine,
  seedArb,
  type Tensors
} from "./support.ts"

type Role = "P" | "R" | "A" | "O"

const arb = fc
  .record({ cfg: configArb, seed: seedArb, reason: adapterSpecArb, tool: adapterSpecArb })
  .chain((c) =>
    batchArb(c.cfg.vocab_size).chain((batch) => {
      const n = batch.tokens.length
      return fc.record({
        c: fc.constant(c),
        batch: fc.constant(batch),
        roles: fc.array(fc.constantFrom<Role>("P", "R", "A", "O"), { minLength: n, maxLength: n }),
        d: dLdlogpArb(n),
        other: dLdlogpArb(n)
      })
    })
  )

it("property 5: two-agent passes keep the reasoning and tool gradients strictly apart", async () => {
  await checkProperty("property 5", arb, async ({ batch, c, d, other, roles }) => {
    const engine = makeEngine(c.cfg, c.seed)
    expect(engine.addAdapter(c.reason)).toBe(0)
    expect(engine.addAdapter(c.tool)).toBe(1)
    const n = batch.tokens.length
    const mask = (dl: Float32Array, role: Role) => dl.map((x, i) => (roles[i] === role ? x : 0))
    /** dl with the entries of one role replaced by `other`. */
    const swap = (role: Role) => d.map((x, i) => (roles[i] === role ? other[i]! : x))

    const twoPasses = async (e: Engine, dl: Float32Array): Promise<[Tensors, Tensors]> => {
      e.zeroGrad()
      await e.forward(batch.tokens, batch.seqLens, new Int32Array(n).fill(0))
      await e.backward(mask(dl, "R"))
      await e.forward(batch.tokens, batch.seqLens, new Int32Array(n).fill(1))
      await e.backward(mask(dl, "A"))
      return [e.adapterGrads(0), e.adapterGrads(1)]
    }

    const [reason, tool] = await twoPasses(engine, d)
    const [, toolR] = await twoPasses(engine, swap("R"))
    expect(bitDiffs(toolR, tool), "tool gradient after changing R tokens' dL/dlogp").toEqual([])
    const [reasonA] = await twoPasses(engine, swap("A"))
    expect(bitDiffs(reasonA, reason), "reasoning gradient after changing A tokens' dL/dlogp").toEqual([])
  })
})
