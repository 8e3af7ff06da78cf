/**
 * `compare`: the statistics (t intervals, smoothed seed curves) by
 * fast-check and known values, and a small comparison on the pipeline
 * fixture: every run trained and evaluated, the table equal to the runs'
 * own results, a second call reusing everything, and a folder holding runs
 * of another config refused.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import fc from "fast-check"
import { readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { compare } from "../src/compare/Compare.ts"
import { meanInterval, movingAverage, seedCurve, tQuantile975 } from "../src/compare/stats.ts"
import { layerSilent } from "../src/train/Progress.ts"
import { firstDifference } from "../src/train/runs.ts"
import { FIXTURE, quickConfig, tmp } from "./support/pipeline.ts"

const RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 200)

describe("compare statistics", () => {
  it("t interval on known values", () => {
    const m = meanInterval([1, 2, 3])
    assert.strictEqual(m.mean, 2)
    assert.closeTo(m.std, 1, 1e-12)
    assert.closeTo(m.halfWidth, 4.303 / Math.sqrt(3), 1e-9)
    assert.closeTo(m.low, 2 - 4.303 / Math.sqrt(3), 1e-9)
    const one = meanInterval([0.4])
    assert.deepStrictEqual([one.low, one.high, one.std], [0.4, 0.4, 0])
    assert.strictEqual(tQuantile975(1), 12.706)
    assert.closeTo(tQuantile975(31), 2.04, 2e-3)
    assert.closeTo(tQuantile975(1000), 1.962, 1e-3)
    assert.throws(() => meanInterval([]))
    assert.throws(() => tQuantile975(0))
  })

  it("intervals hold the mean and widen with the spread (property)", () => {
    let cases = 0
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 2, maxLength: 40 }), fc.double({ min: 1.5, max: 4, noNaN: true }), (xs, k) => {
        cases++
        const m = meanInterval(xs)
        const wide = meanInterval(xs.map((x) => x * k))
        return m.low <= m.mean + 1e-12 && m.mean <= m.high + 1e-12 && wide.halfWidth >= m.halfWidth * k * (1 - 1e-9) - 1e-12
      }),
      { numRuns: RUNS }
    )
    console.log(`meanInterval: ${cases} cases`)
  })

  it("moving averages and seed curves (property)", () => {
    let cases = 0
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 8 }),
        (seeds, window) => {
          cases++
          const s0 = seeds[0]!
          const avg = movingAverage(s0, window)
          const last = s0.slice(Math.max(0, s0.length - window))
          const want = last.reduce((a, b) => a + b, 0) / last.length
          if (Math.abs(avg[avg.length - 1]! - want) > 1e-9) return false
          if (movingAverage(s0, 1).some((v, i) => Math.abs(v - s0[i]!) > 1e-9)) return false
          const curve = seedCurve(seeds, window)
          return curve.length === Math.min(...seeds.map((s) => s.length)) && curve.every((p) => p.min <= p.mean + 1e-12 && p.mean <= p.max + 1e-12)
        }
      ),
      { numRuns: RUNS }
    )
    console.log(`movingAverage/seedCurve: ${cases} cases`)
  })

  it("firstDifference names the first differing path", () => {
    assert.strictEqual(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 2] } }), undefined)
    assert.strictEqual(firstDifference({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] } }), "b.c.1")
    assert.strictEqual(firstDifference({ a: 1 }, { a: 1, z: 0 }), "z")
  })
})

const provide = <A, E, R>(e: Effect.Effect<A, E, R>) => e.pipe(Effect.provide(Layer.mergeAll(layerSilent, NodeServices.layer)))

describe("compare on the fixture", () => {
  it.effect("trains and evaluates every run, summarises them, and reuses them", () =>
    Effect.gen(function*() {
      const outDir = tmp("compare")
      const config = quickConfig({ steps: 2, checkpointEvery: 1 })
      const options = { modes: ["dart", "joint"] as const, seeds: [0, 1], test: join(FIXTURE, "validation.jsonl"), outDir, smoothing: 2 }
      const result = yield* provide(compare(config, options))
      assert.strictEqual(result.runs.length, 4)
      for (const row of result.modes) {
        const runs = result.runs.filter((r) => r.mode === row.mode)
        const tests = runs.map((r) => (JSON.parse(readFileSync(join(r.runDir, "test.json"), "utf8")) as { summary: { em: number } }).summary.em)
        assert.closeTo(row.em.mean, tests.reduce((a, b) => a + b, 0) / tests.length, 1e-12)
        assert.strictEqual(row.em.n, 2)
        assert.strictEqual(row.rewardCurve.length, 2)
        for (const r of runs) assert.strictEqual(r.rewardPerStep.length, 2)
      }
      // The runs train without validation (the test split is their evaluation).
      const runConfig = JSON.parse(readFileSync(join(result.runs[0]!.runDir, "config.json"), "utf8")) as { data: Record<string, unknown>; search: Record<string, unknown> }
      assert.deepStrictEqual(Object.keys(runConfig.data), ["train"])
      assert.deepStrictEqual(Object.keys(runConfig.search), ["index"])
      const html = readFileSync(join(outDir, "compare.html"), "utf8")
      assert.strictEqual((html.match(/<polyline class="curve"/g) ?? []).length, 2)
      assert.notMatch(html, /<script|src="http/)
      const md = readFileSync(join(outDir, "compare.md"), "utf8")
      assert.match(md, /\| dart \| 2 x rank 8 \(reason, tool\) \|/)
      assert.match(md, /\| joint \| 1 x rank 16 \(shared\) \|/)

      // A second call reads everything back: no run is trained again.
      const before = result.runs.map((r) => statSync(join(r.runDir, "metrics.jsonl")).mtimeMs)
      const again = yield* provide(compare(config, options))
      assert.deepStrictEqual(again.modes.map((m) => m.em.mean), result.modes.map((m) => m.em.mean))
      assert.deepStrictEqual(result.runs.map((r) => statSync(join(r.runDir, "metrics.jsonl")).mtimeMs), before)

      // The same folder with another budget is refused, naming the difference.
      const refused = yield* Effect.flip(provide(compare({ ...config, steps: 3 }, options)))
      assert.match(refused.message, /holds a run of another config \(they differ at steps\)/)
    }), 240_000)
})
