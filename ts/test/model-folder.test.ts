/**
 * A TypeScript caller on a real model folder: the Hugging Face Qwen2 fixture
 * (crates/dart-core/tests/fixtures/peft-tiny, made with transformers + peft),
 * its two PEFT adapters, a routed forward that matches transformers + peft,
 * backward, step, save and reload.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Engine, layerLoad } from "../src/engine/Engine.ts"

const fixture = join(import.meta.dirname, "../../crates/dart-core/tests/fixtures/peft-tiny")
const kase = JSON.parse(readFileSync(join(fixture, "case.json"), "utf8")) as {
  tokens: number[]
  seqLens: number[]
  routes: number[]
  dLdlogp: number[]
  logprobs: number[]
}
const batch = {
  tokens: Int32Array.from(kase.tokens),
  seqLens: Int32Array.from(kase.seqLens),
  routes: Int32Array.from(kase.routes)
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "dart-rl-folder-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

layer(layerLoad(join(fixture, "model"), { threads: 2 }))("a Hugging Face model folder", (it) => {
  it.effect("routed forward matches transformers + peft; backward, step, save and reload", () =>
    Effect.gen(function*() {
      const engine = yield* Engine
      assert.strictEqual(yield* engine.loadAdapter(join(fixture, "adapters/reason")), 0)
      assert.strictEqual(yield* engine.loadAdapter(join(fixture, "adapters/tool")), 1)
      const lp = yield* engine.forward(batch)
      kase.logprobs.forEach((want, t) =>
        assert.isAtMost(Math.abs(lp[t]! - want), 1e-4 * Math.max(1, Math.abs(want)), `logprob ${t}`)
      )
      yield* engine.backward(Float32Array.from(kase.dLdlogp))
      const report = yield* engine.step({ lr: 1e-3, maxGradNorm: 1 })
      assert.deepStrictEqual(report.slots.map((s) => s.updated), [true, true])
      const dir = yield* tempDir
      yield* engine.saveAdapter(1, dir)
      const slot = yield* engine.loadAdapter(dir)
      const [saved, loaded] = [yield* engine.adapterTensors(1), yield* engine.adapterTensors(slot)]
      for (const [name, data] of Object.entries(saved)) assert.deepStrictEqual(loaded[name], data, name)
      const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"))
      assert.strictEqual(config.peft_type, "LORA")
      assert.strictEqual(config.r, 2)
    }))
})

describe("a broken model folder", () => {
  it.effect("fails with a typed error naming the folder", () =>
    Effect.gen(function*() {
      const error = yield* Effect.scoped(
        Effect.gen(function*() {
          const dir = yield* tempDir // an empty folder: no config.json
          return yield* Effect.flip(Engine.pipe(Effect.provide(layerLoad(dir))))
        })
      )
      assert.strictEqual(error._tag, "EngineIoError")
      assert.include(error.message, "config.json")
    }))
})
