/**
 * Property 4. Gradient routing: each adapter's gradient is the sum of the
 * contributions of the positions routed to it. Reference ("untying"): a
 * second engine (same config and seed) gets one copy of the adapter per used
 * routes entry, initialised with that adapter's weights, and every position
 * runs with its own copy. Writer convention: position p runs with
 * routes[p+1] (the last position with routes[p]), so the copy is installed at
 * that entry; the last two positions of a sequence share one entry and hence
 * one copy. Then for every original slot k, the sum of its copies' gradients
 * equals slot k's gradient.
 *
 * Tolerance: the reference sums f32 gradients in another order, so
 * |got - want| <= 1e-4 * (1 + max|want|) per tensor (logprobs: 1e-5 * (1 + max|logp|)).
 */
import { expect, it } from "vitest"
import type { AdapterSpec } from "@dart-rl/node"
import {
  assertClose,
  assertTensorsClose,
  caseArb,
  caseEngine,
  checkProperty,
  isAllZero,
  makeEngine,
  routeEntries
} from "./support.ts"

it("property 4: each adapter's gradient is the sum of its positions' gradients (untied reference)", async () => {
  let copies = 0
  await checkProperty("property 4", caseArb(1, 3), async (c) => {
    const { seqLens, tokens } = c.batch
    const k = c.specs.length
    const engine = caseEngine(c)
    const logp = await engine.forward(tokens, seqLens, c.routes)
    await engine.backward(c.dLdlogp)
    const grads = Array.from({ length: k }, (_, s) => engine.adapterGrads(s))
    const weights = Array.from({ length: k }, (_, s) => engine.adapterTensors(s))

    // The untied engine: one copy per routes entry that some position runs with.
    const untied = makeEngine(c.cfg, c.seed)
    const untiedRoutes = new Int32Array(tokens.length).fill(-1)
    const copyOf: number[] = [] // copy slot -> original slot
    for (const e of new Set(routeEntries(seqLens))) {
      const slot = c.routes[e]!
      if (slot < 0) continue
      const spec: AdapterSpec = { ...c.specs[slot]!, bInitStd: 0 }
      const copy = untied.addAdapter(spec)
      for (const [name, w] of Object.entries(weights[slot]!)) untied.setAdapterTensor(copy, name, w)
      copyOf[copy] = slot
      untiedRoutes[e] = copy
    }
    copies += copyOf.length

    const untiedLogp = await untied.forward(tokens, seqLens, untiedRoutes)
    assertClose(untiedLogp, logp, 1e-5, "untied logprobs")
    await untied.backward(c.dLdlogp)

    for (let s = 0; s < k; s++) {
      const sum: Record<string, Float64Array> = {}
      for (const [name, g] of Object.entries(grads[s]!)) sum[name] = new Float64Array(g.length)
      let n = 0
      copyOf.forEach((orig, copy) => {
        if (orig !== s) return
        n++
        for (const [name, g] of Object.entries(untied.adapterGrads(copy))) {
          const acc = sum[name]!
          for (let i = 0; i < g.length; i++) acc[i]! += g[i]!
        }
      })
      if (n === 0) {
        for (const [name, g] of Object.entries(grads[s]!)) expect(isAllZero(g), `unrouted slot ${s} ${name}`).toBe(true)
      } else {
        assertTensorsClose(
          Object.fromEntries(Object.entries(sum).map(([name, a]) => [name, Float32Array.from(a)])),
          grads[s]!,
          1e-4,
          `slot ${s} (sum of ${n} copies vs engine)`
        )
      }
    }
  })
  console.log(`property 4: ${copies} untied copies in all`)
})
