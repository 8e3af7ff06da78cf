/**
 * Property 7. Reductions (all compared bitwise):
 * (a) every position routed to base (-1) gives the logprobs of a fresh engine
 *     with the same config and seed and no adapters, whatever adapters exist
 *     and whatever the never-used routes[start] entries say;
 * (b) one adapter with B = 0 (default init, no bInitStd) gives the base
 *     logprobs under any routes;
 * (c) dart with both roles on one slot equals joint with that slot: an engine
 *     with slots reason + tool where every position runs with slot 0 (or
 *     base) gives the same logprobs and the same slot-0 gradient as an engine
 *     that only has that slot (same seeds); the unused tool slot gets 0.
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import {
  adapterSpecArb,
  adapterSpecsArb,
  batchArb,
  bitDiffs,
  caseEngine,
  checkProperty,
  configArb,
  dLdlogpArb,
  isAllZero,
  liveRoutesArb,
  makeEngine,
  sameBits,
  seedArb
} from "./support.ts"

const baseLogp = (c: { cfg: Parameters<typeof makeEngine>[0]; seed: number }, b: { tokens: Int32Array; seqLens: Int32Array }) =>
  makeEngine(c.cfg, c.seed).forward(b.tokens, b.seqLens, new Int32Array(b.tokens.length).fill(-1))

const describeDiff = (a: Float32Array, b: Float32Array) =>
  Array.from(a).flatMap((x, i) => (Object.is(x, b[i]) ? [] : [`[${i}] ${x} vs ${b[i]}`])).slice(0, 4).join(", ")

it("property 7a: routing every position to base equals the base model", async () => {
  const arb = fc
    .record({ cfg: configArb, seed: seedArb, specs: adapterSpecsArb(1, 3) })
    .chain((c) =>
      batchArb(c.cfg.vocab_size).chain((batch) =>
        fc.record({ c: fc.constant(c), batch: fc.constant(batch), routes: liveRoutesArb(batch.seqLens, c.specs.length, []) })
      )
    )
  await checkProperty("property 7a", arb, async ({ batch, c, routes }) => {
    const got = await caseEngine(c).forward(batch.tokens, batch.seqLens, routes)
    const want = await baseLogp(c, batch)
    expect(sameBits(got, want), describeDiff(got, want)).toBe(true)
  })
})

it("property 7b: one adapter with B = 0 equals the base model", async () => {
  const arb = fc
    .record({ cfg: configArb, seed: seedArb, spec: adapterSpecArb })
    .chain((c) =>
      batchArb(c.cfg.vocab_size).chain((batch) =>
        fc.record({ c: fc.constant(c), batch: fc.constant(batch), routes: liveRoutesArb(batch.seqLens, 1, [0]) })
      )
    )
  await checkProperty("property 7b", arb, async ({ batch, c, routes }) => {
    const { bInitStd: _, ...spec } = c.spec
    const engine = makeEngine(c.cfg, c.seed)
    engine.addAdapter(spec)
    for (const [name, t] of Object.entries(engine.adapterTensors(0))) {
      if (name.includes("lora_B")) expect(isAllZero(t), `${name} starts at 0`).toBe(true)
    }
    const got = await engine.forward(batch.tokens, batch.seqLens, routes)
    const want = await baseLogp(c, batch)
    expect(sameBits(got, want), describeDiff(got, want)).toBe(true)
  })
})

it("property 7c: dart with both roles on one slot equals joint with that slot", async () => {
  const arb = fc
    .record({ cfg: configArb, seed: seedArb, reason: adapterSpecArb, tool: adapterSpecArb, allOnSlot: fc.boolean() })
    .chain((c) =>
      batchArb(c.cfg.vocab_size).chain((batch) =>
        fc.record({
          c: fc.constant(c),
          batch: fc.constant(batch),
          mixed: liveRoutesArb(batch.seqLens, 1, [0]),
          d: dLdlogpArb(batch.tokens.length)
        })
      )
    )
  await checkProperty("property 7c", arb, async ({ batch, c, d, mixed }) => {
    // every position on slot 0, or a mix of slot 0 and base
    const routes = c.allOnSlot ? new Int32Array(batch.tokens.length).fill(0) : mixed
    const dart = caseEngine({ cfg: c.cfg, seed: c.seed, specs: [c.reason, c.tool] })
    const joint = caseEngine({ cfg: c.cfg, seed: c.seed, specs: [c.reason] })
    const dartLogp = await dart.forward(batch.tokens, batch.seqLens, routes)
    const jointLogp = await joint.forward(batch.tokens, batch.seqLens, routes)
    expect(sameBits(dartLogp, jointLogp), describeDiff(dartLogp, jointLogp)).toBe(true)
    await dart.backward(d)
    await joint.backward(d)
    expect(bitDiffs(dart.adapterGrads(0), joint.adapterGrads(0)), "slot 0 gradient").toEqual([])
    expect(Object.values(dart.adapterGrads(1)).every(isAllZero), "tool slot gradient").toBe(true)
  })
})
