/**
 * The WASM build against the native addon (docs/engine-api.md,
 * "WebAssembly"): on the built-in world's model and on the engine's model
 * fixtures, the same logprobs, gradients, AdamW step and generation within
 * 1e-5 relative; the same typed errors; the automatic choice of a build.
 * Needs both builds (bash scripts/setup.sh).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { EngineDefect, EngineInputError, EngineIoError, EngineStateError, random, tinyQwen2Config } from "../src/engine/Engine.ts"
import { type EngineModule, LORA_TARGETS, loadEngine, type NativeEngine } from "../src/engine/native.ts"
import { engineBuildFromEnv, loadEngineModule } from "../src/engine/wasm.ts"

const root = join(import.meta.dirname, "../..")
const fixtures = join(root, "crates/dart-core/tests/fixtures")
/** The built-in world's model and the model-family fixtures (each a Hugging Face folder). */
const MODELS: Record<string, string> = {
  world: join(root, "world/model"),
  "peft-tiny (qwen2)": join(fixtures, "peft-tiny/model"),
  "llama mlp bias": join(fixtures, "models/llama-mlp-bias/model"),
  "llama3 rope": join(fixtures, "models/llama3-rope/model"),
  qwen3: join(fixtures, "models/qwen3/model"),
  "yarn rope": join(fixtures, "models/yarn-rope/model")
}

const native = loadEngine("native").module
const wasm = loadEngine("wasm").module

const TOLERANCE = 1e-5
/**
 * AdamW's first step is about lr * g / (|g| + eps): it amplifies a gradient
 * difference by up to lr / eps, so with the default eps (1e-8) a gradient
 * near 0 turns its last-bit differences into a visible part of a step. With
 * eps = 1e-3 the amplification is bounded (at most 10x here); the moments
 * are held to 1e-5 and the weights after the step to STEP_TOLERANCE.
 */
const STEP = { lr: 1e-2, eps: 1e-3 }
const STEP_TOLERANCE = 1e-4

/** max |a - b| / max |b|: the error relative to the tensor's scale. */
const relError = (a: Float32Array, b: Float32Array): number => {
  assert.strictEqual(a.length, b.length)
  let diff = 0
  let scale = 0
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!))
    scale = Math.max(scale, Math.abs(b[i]!))
  }
  assert.isTrue(Number.isFinite(diff), "non-finite values")
  return scale === 0 ? diff : diff / scale
}

const sameTensors = (
  label: string,
  a: Record<string, Float32Array>,
  b: Record<string, Float32Array>,
  tolerance = TOLERANCE
): number => {
  assert.deepStrictEqual(Object.keys(a).sort(), Object.keys(b).sort(), label)
  let worst = 0
  for (const name of Object.keys(b)) {
    const e = relError(a[name]!, b[name]!)
    assert.isAtMost(e, tolerance, `${label} ${name}`)
    worst = Math.max(worst, e)
  }
  return worst
}

/** Two adapters (reason = 0 on every target, tool = 1 on attention), same seeds in both builds. */
const withAdapters = (e: NativeEngine): NativeEngine => {
  e.addAdapter({ rank: 4, alpha: 8, targets: [...LORA_TARGETS], seed: 1, bInitStd: 0.02 })
  e.addAdapter({ rank: 2, alpha: 4, targets: ["q_proj", "k_proj", "v_proj", "o_proj"], seed: 2, bInitStd: 0.02 })
  return e
}

/** Two sequences, positions routed to base (-1), reason (0) and tool (1). */
const batchFor = (vocab: number) => {
  const seqLens = Int32Array.from([9, 6])
  const n = 15
  const tokens = Int32Array.from({ length: n }, (_, t) => (t * 37 + 5) % vocab)
  const routes = Int32Array.from({ length: n }, (_, t) => (t % 5 === 0 ? -1 : t % 3 === 0 ? 1 : 0))
  const dL = Float32Array.from({ length: n }, (_, t) => Math.sin(t + 1) * 0.5)
  return { tokens, seqLens, routes, dL }
}

const loadBoth = async (dir: string) => {
  const [n, w] = await Promise.all([native.Engine.load(dir, { threads: 1 }), wasm.Engine.load(dir, { threads: 1 })])
  return { n: withAdapters(n), w: withAdapters(w) }
}

describe("WASM build = native cpu", () => {
  for (const [label, dir] of Object.entries(MODELS)) {
    it(`${label}: logprobs and gradients within ${TOLERANCE} relative, a step within ${STEP_TOLERANCE}`, async () => {
      const { n, w } = await loadBoth(dir)
      assert.strictEqual(w.backendInfo().backend, "cpu")
      assert.strictEqual(w.configJson(), n.configJson())
      const vocab = (JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { vocab_size: number }).vocab_size
      const b = batchFor(vocab)
      const [lw, ln] = [await w.forward(b.tokens, b.seqLens, b.routes), await n.forward(b.tokens, b.seqLens, b.routes)]
      const logprobError = relError(lw, ln)
      assert.isAtMost(logprobError, TOLERANCE)
      await w.backward(b.dL)
      await n.backward(b.dL)
      let gradError = 0
      for (const slot of [0, 1]) gradError = Math.max(gradError, sameTensors(`grads ${slot}`, w.adapterGrads(slot), n.adapterGrads(slot)))
      const [rw, rn] = [await w.step(STEP), await n.step(STEP)]
      assert.deepStrictEqual(rw.slots.map((s) => [s.slot, s.tokens, s.updated]), rn.slots.map((s) => [s.slot, s.tokens, s.updated]))
      let stepError = 0
      for (const slot of [0, 1]) {
        sameTensors(`adam ${slot}`, w.optimizerState(slot), n.optimizerState(slot))
        stepError = Math.max(stepError, sameTensors(`tensors ${slot}`, w.adapterTensors(slot), n.adapterTensors(slot), STEP_TOLERANCE))
      }
      // The masked forward (the LM head on the wanted tokens only) too.
      const mask = Uint8Array.from({ length: b.tokens.length }, (_, t) => t % 2)
      const maskedError = relError(await w.forward(b.tokens, b.seqLens, b.routes, mask), await n.forward(b.tokens, b.seqLens, b.routes, mask))
      assert.isAtMost(maskedError, TOLERANCE)
      console.log(
        `${label}: rel error logprobs ${logprobError.toExponential(1)}, grads ${gradError.toExponential(1)}, ` +
          `after a step ${stepError.toExponential(1)}, masked ${maskedError.toExponential(1)}`
      )
    })
  }

  it("world model: DART generation (greedy and sampled) writes the same tokens, roles and routes", async () => {
    const { n, w } = await loadBoth(MODELS.world!)
    const plan = { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 }
    // Any two token ids as the tool-call tags: the routing rule is what is compared.
    const rules = { open: [5], close: [6] }
    for (const temperature of [0, 1]) {
      const out = await Promise.all([w, n].map(async (e) => {
        const s = e.session({ plan, rules, seed: 3 })
        s.addSequence(Int32Array.from([1, 2, 3, 4]))
        s.addSequence(Int32Array.from([7, 8]))
        return s.generate({ maxNewTokens: 24, temperature, pauseOnToolCall: false })
      }))
      const [gw, gn] = out as [Awaited<(typeof out)[0]>, Awaited<(typeof out)[1]>]
      assert.strictEqual(gw.length, 2)
      for (let i = 0; i < gw.length; i++) {
        assert.deepStrictEqual([...gw[i]!.tokens], [...gn[i]!.tokens], `temperature ${temperature}, sequence ${i}`)
        assert.deepStrictEqual([...gw[i]!.roles], [...gn[i]!.roles])
        assert.deepStrictEqual([...gw[i]!.routes], [...gn[i]!.routes])
        assert.strictEqual(gw[i]!.stop, gn[i]!.stop)
        assert.isAtMost(relError(gw[i]!.logprobs, gn[i]!.logprobs), TOLERANCE)
      }
    }
  })

  it("assignRoles is the same function", () => {
    const tokens = Int32Array.from([1, 5, 2, 3, 6, 9, 9, 4])
    const sources = Uint8Array.from([0, 1, 1, 1, 1, 2, 2, 1])
    const rules = { open: [5], close: [6] }
    const roles = wasm.assignRoles(tokens, sources, rules)
    assert.deepStrictEqual([...roles], [...native.assignRoles(tokens, sources, rules)])
    assert.isAbove(new Set(roles).size, 2)
  })
})

describe("WASM build: errors", () => {
  /** The DART_* code and message the call throws or rejects with. */
  const failure = async (f: () => unknown): Promise<{ code: string; message: string }> => {
    try {
      await f()
    } catch (e) {
      return { code: String((e as { code?: unknown }).code), message: (e as Error).message }
    }
    throw new Error("expected a failure")
  }
  const config = JSON.stringify(tinyQwen2Config)

  it("refuses the inputs the addon refuses, with the same code and message", async () => {
    const cases: Array<[string, (m: EngineModule) => unknown]> = [
      ["unknown target", (m) => m.Engine.random(config, 1).addAdapter({ rank: 2, alpha: 4, targets: ["x_proj"], seed: 1 })],
      ["negative seed", (m) => m.Engine.random(config, -1)],
      ["bad backend", (m) => m.Engine.random(config, 1, { backend: "tpu" as "cpu" })],
      ["unknown slot", (m) => m.Engine.random(config, 1).adapterTensors(3)],
      ["bad config", (m) => m.Engine.random("{\"model_type\": \"gpt2\"}", 1)],
      ["route to a missing slot", (m) => m.Engine.random(config, 1).forward(Int32Array.from([1, 2]), Int32Array.from([2]), Int32Array.from([0, 0]))],
      ["backward without forward", (m) => m.Engine.random(config, 1).backward(new Float32Array(2))],
      ["unknown tensor", (m) => m.Engine.random(config, 1).baseTensor("nope")],
      ["bad role", (m) => m.Engine.random(config, 1).session({ plan: { agents: [[0, 0, 0]], writerR: 0, writerA: 0 }, rules: { open: [1], close: [2] } })]
    ]
    for (const [label, f] of cases) {
      const [fw, fn] = [await failure(() => f(wasm)), await failure(() => f(native))]
      assert.match(fw.code, /^DART_/, label)
      assert.deepStrictEqual(fw, fn, label)
    }
  })

  it("a model folder it cannot read, and the checkpoint methods, are DART_IO", async () => {
    const missing = await failure(() => wasm.Engine.load(join(root, "no-such-model")))
    assert.strictEqual(missing.code, "DART_IO")
    const e = wasm.Engine.random(config, 1)
    for (const f of [() => e.saveAdapter(0, "/tmp/x"), () => e.saveState("/tmp/x"), () => e.loadState("/tmp/x"), () => e.saveModel("/tmp/x"), () => e.loadAdapter("/tmp/x")]) {
      const r = await failure(f)
      assert.strictEqual(r.code, "DART_IO")
      assert.match(r.message, /no file system/)
    }
  })

  it("a Rust panic is DART_PANIC with its message; that engine then refuses calls, others still work", async () => {
    const e = wasm.Engine.random(config, 1)
    const p = await failure(() => e.debugPanic())
    assert.strictEqual(p.code, "DART_PANIC")
    assert.match(p.message, /debug_panic was called/)
    assert.strictEqual((await failure(() => e.numAdapters())).code, "DART_STATE")
    assert.strictEqual(wasm.Engine.random(config, 2).numAdapters(), 0)
  })

  it.effect("the Effect wrapper maps them to the same tagged errors", () =>
    Effect.gen(function*() {
      const engine = yield* random(tinyQwen2Config, 1, { build: "wasm" })
      assert.match(engine.native.backendInfo().adapter, /cpu f32/)
      const input = yield* Effect.flip(engine.addAdapter({ rank: 2, alpha: 4, targets: ["x_proj" as "q_proj"], seed: 1 }))
      assert.instanceOf(input, EngineInputError)
      const io = yield* Effect.flip(engine.saveState("/tmp/none"))
      assert.instanceOf(io, EngineIoError)
      const state = yield* Effect.flip(engine.backward(new Float32Array(1)))
      assert.instanceOf(state, EngineStateError)
      const panic = yield* Effect.flip(Effect.tryPromise({ try: () => engine.native.debugPanic(), catch: (e) => e }))
      assert.strictEqual((panic as { code: string }).code, "DART_PANIC")
      const after = yield* Effect.flip(engine.numAdapters)
      assert.instanceOf(after, EngineStateError)
      assert.notInstanceOf(after, EngineDefect)
    }))
})

describe("choosing a build", () => {
  it("auto takes the addon, and the WASM build where the addon does not load", () => {
    assert.strictEqual(loadEngineModule("auto", () => native).build, "native")
    const fallback = loadEngineModule("auto", () => {
      throw new Error("Cannot find module '@dart-rl/node'")
    })
    assert.strictEqual(fallback.build, "wasm")
    assert.strictEqual(fallback.module.Engine.random(JSON.stringify(tinyQwen2Config), 1).backendInfo().backend, "cpu")
    assert.strictEqual(loadEngineModule("wasm", () => native).build, "wasm")
  })

  it("DART_ENGINE names a build or is refused", () => {
    assert.strictEqual(engineBuildFromEnv(undefined), "auto")
    assert.strictEqual(engineBuildFromEnv("wasm"), "wasm")
    assert.strictEqual(engineBuildFromEnv("native"), "native")
    try {
      engineBuildFromEnv("gpu")
      assert.fail("accepted DART_ENGINE=gpu")
    } catch (e) {
      assert.strictEqual((e as { code: string }).code, "DART_INVALID_ARGUMENT")
      assert.match((e as Error).message, /"native", "wasm" or "auto"/)
    }
  })
})
