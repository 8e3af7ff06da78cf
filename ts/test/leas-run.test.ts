/**
 * `pipeline leas` end to end on the pipeline fixture: the variants as
 * plans (who writes R and A), the three trained variants in their modes,
 * the six variants sampled N times per question, the report written, a
 * killed sampling continued without redoing finished chunks (and drawing
 * the same), and a folder sampled with other settings refused.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { VARIANTS } from "../src/leas/algebra.ts"
import { chunkSeed, defaultLeasOptions, runLeas } from "../src/leas/run.ts"
import { TRAINED_VARIANTS, TRAINING_MODE, variantPlan } from "../src/leas/variants.ts"
import { BASE } from "../src/routing/modes.ts"
import { layerSilent } from "../src/train/Progress.ts"
import { FIXTURE, quickConfig, tmp } from "./support/pipeline.ts"

const writers = (v: (typeof VARIANTS)[number]) => {
  const g = variantPlan(v, { reas: 0, tool: 1, unified: 2 }).generation
  // Route of the agent that writes R (role 1) and of the one that writes A (role 2).
  return [g.agents[g.writerR]![1], g.agents[g.writerA]![2]]
}

describe("LEAS variants", () => {
  it("each variant's reasoning and tool-call writers", () => {
    assert.deepStrictEqual(writers("base"), [BASE, BASE])
    assert.deepStrictEqual(writers("reas"), [0, 0])
    assert.deepStrictEqual(writers("tool"), [1, 1])
    assert.deepStrictEqual(writers("unified"), [2, 2])
    assert.deepStrictEqual(writers("hTool"), [BASE, 1])
    assert.deepStrictEqual(writers("hReas"), [0, BASE])
    assert.deepStrictEqual(TRAINED_VARIANTS.map((v) => TRAINING_MODE[v]), ["reas-only", "tool-only", "joint"])
    const seeds = new Set(VARIANTS.flatMap((v) => [0, 1, 2].map((c) => chunkSeed(0, v, c))))
    assert.strictEqual(seeds.size, VARIANTS.length * 3, "every (variant, chunk) draws with its own seed")
  })
})

const provide = <A, E, R>(e: Effect.Effect<A, E, R>) => e.pipe(Effect.provide(Layer.mergeAll(layerSilent, NodeServices.layer)))

const lines = (file: string) => readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "")

describe("pipeline leas on the fixture", () => {
  it.effect("trains the variants, samples every cell, reports, continues a killed sampling, refuses other settings", () =>
    Effect.gen(function*() {
      const outDir = tmp("leas")
      const config = quickConfig({ steps: 2, checkpointEvery: 1 })
      const options = {
        ...defaultLeasOptions,
        outDir,
        questions: join(FIXTURE, "validation.jsonl"),
        limit: 3,
        samples: 4,
        batchSize: 8,
        gradientQuestions: 2,
        gradientRollouts: 4,
        bootstrap: 200
      }
      const first = yield* provide(runLeas(config, options))
      for (const v of TRAINED_VARIANTS) {
        const held = JSON.parse(readFileSync(join(outDir, "runs", v, "config.json"), "utf8")) as { mode: string; steps: number }
        assert.strictEqual(held.mode, TRAINING_MODE[v])
        assert.strictEqual(held.steps, 2)
      }
      // 3 questions in chunks of floor(8 / 4) = 2: two chunks per variant.
      const samples = lines(join(outDir, "samples.jsonl"))
      assert.strictEqual(samples.length, VARIANTS.length * 2)
      for (const l of samples) {
        const c = JSON.parse(l) as { draws: Array<Array<number>> }
        for (const d of c.draws) {
          assert.strictEqual(d.length, 4)
          assert.isTrue(d.every((x) => x === 0 || x === 1))
        }
      }
      const report = JSON.parse(readFileSync(first.files.json, "utf8")) as { counts: { questions: number }; questions: ReadonlyArray<unknown> }
      assert.strictEqual(report.counts.questions, 3)
      assert.match(readFileSync(first.files.html, "utf8"), /<svg/)
      const gradients = JSON.parse(readFileSync(join(outDir, "gradients.json"), "utf8")) as { within: Array<number>; acrossReasoning: Array<number>; skipped: number; questions: Array<string> }
      assert.strictEqual(gradients.within.length + gradients.skipped, gradients.questions.length * 4)
      assert.isTrue(gradients.within.every((c) => Math.abs(c) <= 1 + 1e-9))
      console.log(`leas fixture: ${gradients.questions.length} gradient questions, ${gradients.within.length} trajectories, ${gradients.skipped} skipped (advantage 0)`)

      // Killed mid-sampling: the last three chunks lost, the one before torn.
      // A finished chunk is marked (searches 999) to see that it is read back, not redone.
      const kept = samples.slice(0, samples.length - 4)
      const marked = kept[0]!.replace(/"searches":\d+/, '"searches":999')
      writeFileSync(join(outDir, "samples.jsonl"), [marked, ...kept.slice(1)].map((l) => `${l}\n`).join("") + samples[samples.length - 4]!.slice(0, 20))
      const second = yield* provide(runLeas(config, options))
      const redone = lines(join(outDir, "samples.jsonl"))
      assert.strictEqual(redone.length, samples.length)
      assert.strictEqual(redone[0], marked, "a finished chunk is not redone")
      assert.deepStrictEqual(new Set(redone.slice(1)), new Set(samples.slice(1)), "the redone chunks draw what they drew before")
      assert.deepStrictEqual(second.analysis.questions, first.analysis.questions)

      // Other sampling settings in the same folder are refused.
      const refused = yield* Effect.flip(provide(runLeas(config, { ...options, samples: 5 })))
      assert.match(refused.message, /holds a LEAS run with other settings \(they differ at samples\)/)
    }), 300_000)
})
