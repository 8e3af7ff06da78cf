/**
 * The Effect wrapper of the engine on a tiny random model (needs the built
 * addon: `pnpm build:addon`).
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { runDemo } from "../src/demo/EngineDemo.ts"
import {
  type Batch,
  Engine,
  type EngineShape,
  EngineInputError,
  LORA_TARGETS,
  layerRandom,
  random,
  tinyQwen2Config
} from "../src/engine/Engine.ts"

const batch = (seqLens: ReadonlyArray<number>, route: (pos: number) => number): Batch => {
  const total = seqLens.reduce((a, b) => a + b, 0)
  const tokens = new Int32Array(total)
  const routes = new Int32Array(total)
  let t = 0
  for (const len of seqLens) {
    for (let i = 0; i < len; i++, t++) {
      tokens[t] = (t * 7 + 3) % tinyQwen2Config.vocab_size
      routes[t] = route(i)
    }
  }
  return { tokens, seqLens: Int32Array.from(seqLens), routes }
}

/** A fresh engine with adapters `reason` (slot 0) and `tool` (slot 1). */
const twoAdapters = Effect.gen(function*() {
  const engine = yield* random(tinyQwen2Config, 11, { threads: 2 })
  yield* engine.addAdapter({ rank: 8, alpha: 16, targets: LORA_TARGETS, seed: 1, bInitStd: 0.02 })
  yield* engine.addAdapter({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj"], seed: 2, bInitStd: 0.02 })
  return engine
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "dart-rl-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const expectInputError = (engine: EngineShape, b: Batch, code: EngineInputError["code"]) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(engine.forward(b))
    assert.instanceOf(error, EngineInputError)
    assert.strictEqual(error._tag, "EngineInputError")
    assert.strictEqual(error.code, code)
    assert.strictEqual(error.op, "forward")
    assert.isAbove(error.message.length, 0)
  })

describe("Engine (Effect wrapper)", () => {
  it.effect("forward returns one finite logprob per token, 0 at sequence starts", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      const b = batch([5, 8, 3], (i) => (i % 3 === 1 ? 1 : i % 3 === 2 ? -1 : 0))
      const logprobs = yield* engine.forward(b)
      assert.instanceOf(logprobs, Float32Array)
      assert.strictEqual(logprobs.length, b.tokens.length)
      for (const x of logprobs) {
        assert.isTrue(Number.isFinite(x))
        assert.isAtMost(x, 0)
      }
      assert.strictEqual(logprobs[0], 0)
      assert.strictEqual(logprobs[5], 0)
      assert.strictEqual(logprobs[13], 0)
    }))

  it.effect("logprobMask: the wanted tokens' logprobs as without it, 0 elsewhere; bad masks are refused", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      const b = batch([5, 8, 3], (i) => (i % 3 === 1 ? 1 : i % 3 === 2 ? -1 : 0))
      const full = yield* engine.forward(b)
      const logprobMask = Uint8Array.from(b.tokens, (_, t) => (t % 4 === 2 || t === 9 ? 1 : 0))
      const part = yield* engine.forward({ ...b, logprobMask })
      let wanted = 0
      for (let t = 0; t < full.length; t++) {
        if (logprobMask[t] === 1) {
          wanted++
          assert.isBelow(Math.abs(part[t]! - full[t]!), 1e-6 * Math.max(1, Math.abs(full[t]!)), `token ${t}`)
        } else {
          assert.strictEqual(part[t], 0, `token ${t} is not wanted`)
        }
      }
      assert.isAbove(wanted, 3)
      yield* expectInputError(engine, { ...b, logprobMask: logprobMask.subarray(1) }, "DART_SHAPE")
      yield* expectInputError(engine, { ...b, logprobMask: Uint8Array.from(logprobMask, (x, t) => (t === 6 ? 2 : x)) }, "DART_INVALID_ARGUMENT")
    }))

  it.effect("routes of the wrong length fail with EngineInputError DART_SHAPE", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      const b = batch([4, 4], () => 0)
      yield* expectInputError(engine, { ...b, routes: b.routes.subarray(0, 7) }, "DART_SHAPE")
    }))

  it.effect("a route to a slot that does not exist fails with DART_UNKNOWN_SLOT", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      yield* expectInputError(engine, batch([6], (i) => (i === 3 ? 7 : 0)), "DART_UNKNOWN_SLOT")
      const error = yield* Effect.flip(engine.adapterTensors(7))
      assert.strictEqual(error._tag, "EngineInputError")
      assert.strictEqual(error.code, "DART_UNKNOWN_SLOT")
    }))

  it.effect("saveAdapter then loadAdapter round-trips the tensors", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      const dir = yield* tempDir
      yield* engine.saveAdapter(1, dir)
      const slot = yield* engine.loadAdapter(dir)
      assert.strictEqual(slot, 2)
      assert.strictEqual(yield* engine.numAdapters, 3)
      const saved = yield* engine.adapterTensors(1)
      const loaded = yield* engine.adapterTensors(slot)
      assert.deepStrictEqual(Object.keys(loaded).sort(), Object.keys(saved).sort())
      // rank 4 on q_proj and v_proj of 2 layers: lora_A and lora_B each
      assert.strictEqual(Object.keys(saved).length, 2 * 2 * 2)
      for (const [name, data] of Object.entries(saved)) {
        assert.deepStrictEqual(loaded[name], data, name)
      }
      // and into a fresh engine of the same architecture
      const other = yield* random(tinyQwen2Config, 99, { threads: 2 })
      const otherSlot = yield* other.loadAdapter(dir)
      assert.strictEqual(otherSlot, 0)
      const reloaded = yield* other.adapterTensors(otherSlot)
      for (const [name, data] of Object.entries(saved)) {
        assert.deepStrictEqual(reloaded[name], data, name)
      }
    }))

  it("a Rust panic inside an async call rejects with DART_PANIC and node keeps running", async () => {
    const engine = await Effect.runPromise(random(tinyQwen2Config, 5, { threads: 1 }))
    const error = await engine.native.debugPanic().then(() => undefined, (e: unknown) => e as { code?: string; message?: string })
    assert.strictEqual(error?.code, "DART_PANIC")
    assert.include(error?.message ?? "", "debug_panic")
    // The engine still works afterwards.
    const lp = await engine.native.forward(Int32Array.from([1, 2, 3]), Int32Array.from([3]), Int32Array.from([-1, -1, -1]))
    assert.strictEqual(lp.length, 3)
  })

  it.effect("loading an adapter from a missing folder fails with EngineIoError", () =>
    Effect.gen(function*() {
      const engine = yield* twoAdapters
      const error = yield* Effect.flip(engine.loadAdapter(join(tmpdir(), "dart-rl-no-such-adapter")))
      assert.strictEqual(error._tag, "EngineIoError")
      assert.strictEqual(error.code, "DART_IO")
    }))
})

layer(layerRandom(tinyQwen2Config, 3, { threads: 2 }))("Engine layer", (it) => {
  it.effect("the train demo lowers the loss in a few steps", () =>
    Effect.gen(function*() {
      const result = yield* runDemo({ steps: 8, lr: 1e-2, seed: 3, vocabSize: tinyQwen2Config.vocab_size })
      assert.strictEqual(result.losses.length, 8)
      assert.isBelow(result.finalLoss, result.initialLoss)
      const engine = yield* Engine
      assert.strictEqual(yield* engine.numAdapters, 2)
    }))
})
