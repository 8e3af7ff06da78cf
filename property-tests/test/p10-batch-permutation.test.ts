/**
 * Property 10. Batch permutation: permuting the sequences of a batch (with
 * their routes and dL/dlogp) permutes the per-sequence logprob segments and
 * changes nothing else: logprobs equal within 1e-6 (absolute), adapter
 * gradients within 1e-5 * (1 + max|g|) (f32 accumulation order over
 * sequences differs).
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import { assertTensorsClose, caseArb, caseEngine, checkProperty, sequences } from "./support.ts"

const arb = caseArb(1, 3).chain((c) =>
  fc.record({
    c: fc.constant(c),
    order: fc.shuffledSubarray(Array.from(c.batch.seqLens, (_, i) => i), {
      minLength: c.batch.seqLens.length,
      maxLength: c.batch.seqLens.length
    })
  })
)

it("property 10: permuting the sequences of a batch only permutes the outputs", async () => {
  await checkProperty("property 10", arb, async ({ c, order }) => {
    const { seqLens, tokens } = c.batch
    const k = c.specs.length
    const seqs = sequences(seqLens)
    const permute = <A extends Int32Array | Float32Array>(a: A): A => {
      const out = a.slice() as A
      let t = 0
      for (const i of order) {
        const [s, l] = seqs[i]!
        out.set(a.subarray(s, s + l), t)
        t += l
      }
      return out
    }
    const engine = caseEngine(c)
    const logp = await engine.forward(tokens, seqLens, c.routes)
    await engine.backward(c.dLdlogp)
    const grads = Array.from({ length: k }, (_, s) => engine.adapterGrads(s))
    engine.zeroGrad()

    const pSeqLens = Int32Array.from(order, (i) => seqLens[i]!)
    const pLogp = await engine.forward(permute(tokens), pSeqLens, permute(c.routes))
    const want = permute(logp)
    for (let i = 0; i < pLogp.length; i++) {
      expect(Math.abs(pLogp[i]! - want[i]!), `logprob ${i}: ${pLogp[i]} vs ${want[i]}`).toBeLessThanOrEqual(1e-6)
    }
    await engine.backward(permute(c.dLdlogp))
    for (let s = 0; s < k; s++) assertTensorsClose(engine.adapterGrads(s), grads[s]!, 1e-5, `slot ${s} gradient`)
  })
})
