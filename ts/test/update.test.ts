/**
 * The Update stage on real rollouts of the pipeline fixture: micro-batching
 * changes nothing (the whole batch's aggregation weights, accumulated), PPO
 * epochs step once each with the first epoch on policy, and a mode steps
 * exactly its own adapters.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Rollout from "../src/rollout/Rollout.ts"
import { basePlan, modePlan, type TrainMode } from "../src/routing/modes.ts"
import { modeSlots, slotNames } from "../src/train/Train.ts"
import * as Update from "../src/update/Update.ts"
import { FIXTURE, fixtureEngine, fixtureSearch, fixtureTokenizer } from "./support/pipeline.ts"

const questions = readFileSync(join(FIXTURE, "train.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { question: string })

/** A fresh engine with the mode's adapters and one batch of rollouts. */
const setup = (mode: TrainMode) =>
  Effect.gen(function*() {
    const engine = yield* fixtureEngine
    for (let i = 0; i < slotNames(mode).length; i++) {
      yield* engine.addAdapter({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj", "up_proj"], seed: 20 + i, bInitStd: 0.02 })
    }
    const plan = modePlan(mode, modeSlots(mode))
    const rollout = Rollout.make(engine, yield* fixtureTokenizer, yield* fixtureSearch, { ...Rollout.defaultRolloutConfig, groupSize: 3, maxTurnTokens: 48, maxSearches: 2, maxTurns: 3 })
    const trajectories = yield* rollout.run({ prompts: questions.slice(0, 3), plan: plan.generation, seed: 5 })
    const advantages = trajectories.map((_, i) => [1, -0.5, -0.5][i % 3]!)
    return { engine, plan, trajectories, advantages }
  })

const tensors = (engine: Effect.Success<typeof fixtureEngine>, slots: number) =>
  Effect.gen(function*() {
    const out: Array<Record<string, Float32Array>> = []
    for (let s = 0; s < slots; s++) out.push(yield* engine.adapterTensors(s))
    return out
  })

describe("update", () => {
  it.effect("micro-batches of 64 tokens give the same gradient as one batch", () =>
    Effect.gen(function*() {
      const results = []
      for (const microBatchTokens of [1 << 20, 64]) {
        const { advantages, engine, plan, trajectories } = yield* setup("dart")
        // AdamW with eps = 1 and lr = 1: the first step moves each parameter by
        // g / (|g| + 1), nearly g itself, so the step compares the gradients
        // (with a small eps the first step is lr * sign(g), blind to them).
        const update = Update.make(engine, { ...Update.defaultUpdateConfig, microBatchTokens, optimizer: { ...Update.defaultUpdateConfig.optimizer, eps: 1, maxGradNorm: 0 } })
        const before = yield* tensors(engine, 2)
        const report = yield* update.update({ sequences: trajectories, advantages, plan, lr: 1 })
        const after = yield* tensors(engine, 2)
        results.push({ report, moved: after.map((slot, s) => Object.fromEntries(Object.entries(slot).map(([k, v]) => [k, v.map((x, i) => x - before[s]![k]![i]!)]))) })
      }
      const [one, many] = results as [(typeof results)[number], (typeof results)[number]]
      assert.strictEqual(one.report.trainedTokens, many.report.trainedTokens)
      assert.approximately(one.report.loss, many.report.loss, 1e-6)
      let worst = 0
      let largest = 0
      for (let s = 0; s < 2; s++) {
        for (const [name, a] of Object.entries(one.moved[s]!)) {
          const b = many.moved[s]![name]!
          for (let i = 0; i < a.length; i++) {
            worst = Math.max(worst, Math.abs(a[i]! - b[i]!))
            largest = Math.max(largest, Math.abs(a[i]!))
          }
        }
      }
      console.log(`micro-batching: ${one.report.trainedTokens} trained tokens; step difference ${worst.toExponential(2)} for steps up to ${largest.toExponential(2)}`)
      assert.isAbove(largest, 1e-4)
      assert.isBelow(worst, 1e-4 * largest)
    }))

  it.effect("PPO epochs: one AdamW step each, the first epoch on policy", () =>
    Effect.gen(function*() {
      const { advantages, engine, plan, trajectories } = yield* setup("joint")
      const update = Update.make(engine, { ...Update.defaultUpdateConfig, ppoEpochs: 3 })
      const report = yield* update.update({ sequences: trajectories, advantages, plan, lr: 5e-2 })
      assert.approximately(report.firstEpochRatio, 1, 1e-5)
      const state = engine.native.optimizerState(0)
      assert.strictEqual(state.step![0], 3, "three AdamW steps")
      // The next update is off policy now: the ratio moved.
      const again = yield* Update.make(engine, Update.defaultUpdateConfig).update({ sequences: trajectories, advantages, plan, lr: 5e-2 })
      console.log(`PPO epochs: first-epoch ratio ${report.firstEpochRatio}, after 3 epochs ${again.firstEpochRatio} (clip fraction ${again.clipFraction.toFixed(3)})`)
      assert.isAbove(Math.abs(again.firstEpochRatio - 1), 1e-4)
    }))

  for (const mode of ["dart", "two-agent", "reas-only", "tool-only"] as const) {
    it.effect(`mode ${mode} steps its own adapters with its own roles' tokens`, () =>
      Effect.gen(function*() {
        const { advantages, engine, plan, trajectories } = yield* setup(mode)
        const before = yield* tensors(engine, slotNames(mode).length)
        const report = yield* Update.make(engine).update({ sequences: trajectories, advantages, plan, lr: 1e-2 })
        const after = yield* tensors(engine, slotNames(mode).length)
        for (let s = 0; s < before.length; s++) {
          const changed = Object.keys(before[s]!).some((k) => before[s]![k]!.some((x, i) => x !== after[s]![k]![i]))
          assert.isTrue(changed, `slot ${s} changed`)
          assert.isTrue(report.slots.find((r) => r.slot === s)!.updated)
        }
        // Trained tokens are exactly the mode's loss roles.
        const expected = trajectories.reduce((n, t) =>
          n + plan.passes.reduce((m, pass) => m + Array.from(t.roles).filter((r, i) => i > 0 && pass.loss[r]).length, 0), 0)
        assert.strictEqual(report.trainedTokens, expected)
      }))
  }

  it.effect("refuses an evaluation-only plan and mismatched inputs", () =>
    Effect.gen(function*() {
      const { engine, trajectories } = yield* setup("dart")
      const update = Update.make(engine)
      const hybrid = basePlan()
      const e1 = yield* Effect.flip(update.update({ sequences: trajectories, advantages: trajectories.map(() => 0), plan: hybrid, lr: 1e-3 }))
      assert.include(e1.message, "no training passes")
      const e2 = yield* Effect.flip(update.update({ sequences: trajectories, advantages: [1], plan: modePlan("dart", modeSlots("dart")), lr: 1e-3 }))
      assert.include(e2.message, `1 advantages for ${trajectories.length} sequences`)
    }))
})

describe("gradient-angle probe", () => {
  it.effect("cosine(g_reasoning, g_tool) on the shared adapter, nothing stepped; refused for two adapters", () =>
    Effect.gen(function*() {
      const { advantages, engine, plan, trajectories } = yield* setup("joint")
      const update = Update.make(engine)
      const before = yield* engine.adapterTensors(0)
      const probe = yield* update.gradientCosine({ sequences: trajectories, advantages, plan, lr: 1e-2 })
      console.log(`gradient probe (joint): cosine ${probe.cosine.toFixed(4)}, |g_R| ${probe.normReasoning.toExponential(2)}, |g_A| ${probe.normTool.toExponential(2)}`)
      assert.isAbove(probe.normReasoning, 0)
      assert.isAbove(probe.normTool, 0)
      assert.isAtMost(Math.abs(probe.cosine), 1)
      assert.isBelow(Math.abs(probe.cosine), 0.9999, "two different gradients")
      // Nothing stepped, gradients cleared.
      const after = yield* engine.adapterTensors(0)
      for (const k of Object.keys(before)) assert.deepStrictEqual(after[k], before[k])
      const grads = yield* engine.adapterGrads(0)
      for (const g of Object.values(grads)) assert.isTrue(g.every((x) => x === 0))
      const dart = yield* setup("dart")
      const refused = yield* Effect.flip(Update.make(dart.engine).gradientCosine({ sequences: dart.trajectories, advantages: dart.advantages, plan: dart.plan, lr: 1e-2 }))
      assert.include(refused.message, "one shared adapter")
    }))
  it.effect("per-trajectory role gradients add up to the batch's (token-mean weights), nothing stepped", () =>
    Effect.gen(function*() {
      const { advantages, engine, plan, trajectories } = yield* setup("joint")
      const update = Update.make(engine)
      const before = yield* engine.adapterTensors(0)
      const request = { sequences: trajectories, advantages, plan, lr: 1e-2 }
      const probe = yield* update.gradientCosine(request)
      const each = yield* update.roleGradients(request)
      assert.strictEqual(each.length, trajectories.length)
      // token-mean: the batch gradient is each sequence's weighted by its share of the role's tokens.
      const count = (role: number) => trajectories.map((t) => t.roles.filter((r) => r === role).length)
      const sum = (which: "reasoning" | "tool", counts: ReadonlyArray<number>) => {
        const total = counts.reduce((a, b) => a + b, 0)
        const out = new Float64Array(each[0]![which].length)
        each.forEach((g, i) => g[which].forEach((v, k) => (out[k]! += (v * counts[i]!) / total)))
        return out
      }
      const gR = sum("reasoning", count(1))
      const gA = sum("tool", count(2))
      console.log(`role gradients: |sum g_R| ${Update.norm(gR).toExponential(3)} vs batch ${probe.normReasoning.toExponential(3)}; cosine ${Update.cosine(gR, gA).toFixed(5)} vs ${probe.cosine.toFixed(5)}`)
      assert.closeTo(Update.norm(gR) / probe.normReasoning, 1, 1e-4)
      assert.closeTo(Update.norm(gA) / probe.normTool, 1, 1e-4)
      assert.closeTo(Update.cosine(gR, gA), probe.cosine, 1e-4)
      const after = yield* engine.adapterTensors(0)
      for (const k of Object.keys(before)) assert.deepStrictEqual(after[k], before[k])
    }))
})
