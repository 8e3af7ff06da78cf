/**
 * A short end-to-end exercise of the engine: two LoRA adapters on a tiny
 * random model, a fixed batch whose middle span of every sequence is routed to
 * the `tool` adapter (slot 1) and the rest to `reason` (slot 0), and a few
 * steps of maximum likelihood. It stands in for `pipeline train` until the RL
 * pipeline lands, and shows that routing, backward and the optimizer work.
 */
import { Console, Effect, Schema } from "effect"
import { type Batch, Engine, type EngineError, LORA_TARGETS, type SlotReport } from "../engine/Engine.ts"

export interface DemoOptions {
  readonly steps: number
  readonly lr: number
  readonly seed: number
  readonly vocabSize: number
}

export interface DemoResult {
  readonly losses: ReadonlyArray<number>
  readonly initialLoss: number
  readonly finalLoss: number
}

export class DemoLossDidNotDecrease extends Schema.TaggedError<DemoLossDidNotDecrease>()(
  "DemoLossDidNotDecrease",
  { initialLoss: Schema.Number, finalLoss: Schema.Number, message: Schema.String }
) {}

/** mulberry32: a small seeded PRNG, enough for a reproducible demo batch. */
const rng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Sequences of lengths `seqLens`; tokens [len/3, 2len/3) route to slot 1, the rest to slot 0. */
export const makeDemoBatch = (seed: number, vocabSize: number, seqLens: ReadonlyArray<number>): Batch => {
  const next = rng(seed)
  const total = seqLens.reduce((a, b) => a + b, 0)
  const tokens = new Int32Array(total)
  const routes = new Int32Array(total)
  let offset = 0
  for (const len of seqLens) {
    const lo = Math.floor(len / 3)
    const hi = Math.floor((2 * len) / 3)
    for (let i = 0; i < len; i++) {
      tokens[offset + i] = Math.floor(next() * vocabSize)
      routes[offset + i] = i >= lo && i < hi ? 1 : 0
    }
    offset += len
  }
  return { tokens, seqLens: Int32Array.from(seqLens), routes }
}

/** dL/dlogp of loss = -mean logprob over the non-first tokens of every sequence. */
export const meanNllGradient = (seqLens: Int32Array): { readonly dLdlogp: Float32Array; readonly count: number } => {
  const total = seqLens.reduce((a, b) => a + b, 0)
  const count = total - seqLens.length
  const dLdlogp = new Float32Array(total).fill(-1 / count)
  let offset = 0
  for (const len of seqLens) {
    dLdlogp[offset] = 0
    offset += len
  }
  return { dLdlogp, count }
}

const meanNll = (logprobs: Float32Array, dLdlogp: Float32Array): number => {
  let loss = 0
  for (let t = 0; t < logprobs.length; t++) loss += (dLdlogp[t] ?? 0) * (logprobs[t] ?? 0)
  return loss
}

const formatSlot = (names: ReadonlyArray<string>) => (r: SlotReport) =>
  `${names[r.slot] ?? `slot${r.slot}`} |g| ${r.gradNorm.toExponential(3)} (${r.tokens} tok${r.clipped ? ", clipped" : ""})`

export const runDemo = (
  options: DemoOptions
): Effect.Effect<DemoResult, EngineError | DemoLossDidNotDecrease, Engine> =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const names = ["reason", "tool"]
    const reason = yield* engine.addAdapter({ rank: 8, alpha: 16, targets: LORA_TARGETS, seed: options.seed + 1 })
    const tool = yield* engine.addAdapter({ rank: 8, alpha: 16, targets: LORA_TARGETS, seed: options.seed + 2 })
    yield* Console.log(`adapters: reason=slot ${reason}, tool=slot ${tool} (rank 8, alpha 16, ${LORA_TARGETS.join(" ")})`)

    const batch = makeDemoBatch(options.seed, options.vocabSize, [24, 20, 16, 12])
    const { count, dLdlogp } = meanNllGradient(batch.seqLens)
    yield* Console.log(`batch: ${batch.seqLens.length} sequences, ${batch.tokens.length} tokens, ${count} scored`)

    const losses: Array<number> = []
    for (let i = 1; i <= options.steps; i++) {
      yield* engine.zeroGrad
      const logprobs = yield* engine.forward(batch)
      const loss = meanNll(logprobs, dLdlogp)
      if (!Number.isFinite(loss)) {
        return yield* new DemoLossDidNotDecrease({
          initialLoss: losses[0] ?? loss,
          finalLoss: loss,
          message: `loss is not finite at step ${i}`
        })
      }
      losses.push(loss)
      yield* engine.backward(dLdlogp)
      const report = yield* engine.step({ lr: options.lr, maxGradNorm: 1 })
      const width = String(options.steps).length
      yield* Console.log(
        `step ${String(i).padStart(width)}/${options.steps}  loss ${loss.toFixed(4)}  ` +
          report.slots.map(formatSlot(names)).join("  ")
      )
    }

    const finalLogprobs = yield* engine.forward(batch)
    const finalLoss = meanNll(finalLogprobs, dLdlogp)
    const initialLoss = losses[0] ?? finalLoss
    yield* Console.log(`final loss ${finalLoss.toFixed(4)} (initial ${initialLoss.toFixed(4)})`)
    if (!(finalLoss < initialLoss)) {
      return yield* new DemoLossDidNotDecrease({
        initialLoss,
        finalLoss,
        message: `the loss did not go down: ${initialLoss.toFixed(4)} -> ${finalLoss.toFixed(4)}`
      })
    }
    return { losses, initialLoss, finalLoss }
  })
