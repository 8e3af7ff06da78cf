/**
 * The TypeScript side's copy of the engine's vocabulary (src/domain/model.ts:
 * LoRA target names, role codes, the config.json schema) agrees with the
 * addon, and the model families beyond Qwen2 reach TypeScript: each
 * model-family fixture (made with transformers + peft) loads through the
 * Effect service and matches; a config key the engine would have to ignore
 * comes back as a typed DART_CONFIG error naming it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { LORA_TARGETS, ModelConfig, ROLE, SOURCE } from "../src/domain/model.ts"
import { Engine, layerLoad, random, tinyQwen2Config } from "../src/engine/Engine.ts"
import { loadNative } from "../src/engine/native.ts"

const fixtures = join(import.meta.dirname, "../../crates/dart-core/tests/fixtures")
const FAMILIES = ["llama-mlp-bias", "llama3-rope", "qwen3", "yarn-rope"] as const

describe("the domain constants agree with the addon", () => {
  it.effect("LORA_TARGETS: each name is a target the engine adapts; others are refused", () =>
    Effect.gen(function*() {
      const engine = yield* random(tinyQwen2Config, 1)
      const slot = yield* engine.addAdapter({ rank: 2, alpha: 4, targets: LORA_TARGETS, seed: 1 })
      const names = Object.keys(yield* engine.adapterTensors(slot))
      const layer0 = names.filter((n) => n.includes(".layers.0.") && n.includes("lora_A"))
      // One lora_A per target in layer 0, each named after exactly one target.
      const found = layer0.map((n) => LORA_TARGETS.findIndex((t) => n.includes(`.${t}.`))).sort((a, b) => a - b)
      assert.deepStrictEqual(found, LORA_TARGETS.map((_, i) => i), layer0.join(", "))
      const bad = yield* Effect.flip(engine.addAdapter({ rank: 2, alpha: 4, targets: ["qkv_proj" as never], seed: 1 }))
      assert.strictEqual(bad._tag, "EngineInputError")
      assert.include(bad.message, "qkv_proj")
    }))

  it("ROLE and SOURCE: the codes assignRoles returns", () => {
    // prompt | model: think, <search>, query, </search> | tool output | model
    const tokens = Int32Array.from([1, 2, 5, 7, 6, 8, 9])
    const s = SOURCE
    const sources = Uint8Array.from([s.prompt, s.model, s.model, s.model, s.model, s.tool, s.model])
    const roles = loadNative().assignRoles(tokens, sources, { open: [5], close: [6] })
    assert.deepStrictEqual(Array.from(roles), [ROLE.P, ROLE.R, ROLE.R, ROLE.A, ROLE.A, ROLE.O, ROLE.R])
  })
})

describe("model families through the Effect engine", () => {
  for (const name of FAMILIES) {
    it.effect(`${name}: config.json decodes, the folder loads, routed logprobs match transformers + peft`, () =>
      Effect.gen(function*() {
        const root = join(fixtures, "models", name)
        const raw = JSON.parse(readFileSync(join(root, "model/config.json"), "utf8"))
        const cfg = yield* Schema.decodeUnknownEffect(ModelConfig)(raw)
        assert.strictEqual(cfg.model_type, raw.model_type)
        const kase = JSON.parse(readFileSync(join(root, "case.json"), "utf8"))
        const lp = yield* Effect.gen(function*() {
          const engine = yield* Engine
          yield* engine.loadAdapter(join(root, "adapters/reason"))
          yield* engine.loadAdapter(join(root, "adapters/tool"))
          return yield* engine.forward({
            tokens: Int32Array.from(kase.tokens),
            seqLens: Int32Array.from(kase.seqLens),
            routes: Int32Array.from(kase.routes)
          })
        }).pipe(Effect.provide(layerLoad(join(root, "model"), { threads: 1 })))
        kase.logprobs.forEach((want: number, t: number) =>
          assert.isAtMost(Math.abs(lp[t]! - want), 1e-4 * Math.max(1, Math.abs(want)), `${name} logprob ${t}`)
        )
      }))
  }

  it.effect("a config.json the weights contradict fails with DART_CONFIG naming the tensors", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "dart-rl-family-"))
      try {
        cpSync(join(fixtures, "models/llama-mlp-bias/model"), dir, { recursive: true })
        const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"))
        writeFileSync(join(dir, "config.json"), JSON.stringify({ ...raw, mlp_bias: false }))
        const error = yield* Effect.flip(Engine.pipe(Effect.provide(layerLoad(dir))))
        assert.strictEqual(error._tag, "EngineInputError")
        assert.strictEqual(error.code, "DART_CONFIG")
        assert.include(error.message, "mlp.gate_proj.bias")
        writeFileSync(join(dir, "config.json"), JSON.stringify({ ...raw, rope_parameters: { rope_type: "dynamic", factor: 2 } }))
        const dynamic = yield* Effect.flip(Engine.pipe(Effect.provide(layerLoad(dir))))
        assert.strictEqual(dynamic.code, "DART_CONFIG")
        assert.include(dynamic.message, "\"dynamic\"")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
