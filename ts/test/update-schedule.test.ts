/**
 * The Update stage's pure pieces (ts/src/update/schedule.ts) with fast-check:
 * the learning rate rises during warm-up, never exceeds lr, decays
 * monotonically to minLr; micro-batches keep every sequence exactly once, in
 * order, within the token budget (a longer sequence alone).
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { learningRate, type LrSchedule, microBatches } from "../src/update/schedule.ts"

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 100)

const scheduleArb = fc
  .record({
    lr: fc.double({ min: 1e-6, max: 1, noNaN: true }),
    minFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    warmupSteps: fc.nat(20),
    extra: fc.integer({ min: 1, max: 200 }),
    schedule: fc.constantFrom("cosine" as const, "constant" as const)
  })
  .map((r): LrSchedule => ({ lr: r.lr, minLr: r.lr * r.minFrac, warmupSteps: r.warmupSteps, totalSteps: r.warmupSteps + r.extra, schedule: r.schedule }))

describe("learning-rate schedule", () => {
  it("warm-up rises to lr, then decays monotonically to minLr (cosine) or stays (constant); in (0, lr], >= minLr after warm-up", () => {
    fc.assert(
      fc.property(scheduleArb, (s) => {
        let prev = 0
        for (let step = 0; step < s.totalSteps + 5; step++) {
          const lr = learningRate(s, step)
          expect(lr).toBeLessThanOrEqual(s.lr * (1 + 1e-12))
          // positive until the decay ends (then minLr, which may be 0)
          if (step < s.totalSteps) expect(lr).toBeGreaterThan(0)
          // after the warm-up the rate never falls below minLr
          if (step >= s.warmupSteps) expect(lr).toBeGreaterThanOrEqual(s.minLr * (1 - 1e-12))
          if (step < s.warmupSteps) expect(lr).toBeGreaterThan(prev)
          else if (step > s.warmupSteps) expect(lr).toBeLessThanOrEqual(prev * (1 + 1e-12))
          prev = lr
        }
        expect(learningRate(s, s.warmupSteps)).toBeCloseTo(s.lr, 12)
        expect(learningRate(s, s.totalSteps + 3)).toBeCloseTo(s.schedule === "cosine" ? s.minLr : s.lr, 12)
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "lr schedule shape": ${NUM_RUNS} cases`)
  })

  it("bad steps and schedules are refused", () => {
    const s: LrSchedule = { lr: 1e-3, minLr: 0, warmupSteps: 2, totalSteps: 10, schedule: "cosine" }
    expect(() => learningRate(s, -1)).toThrow("step = -1")
    expect(() => learningRate({ ...s, minLr: 1 }, 0)).toThrow("minLr = 1 is above lr")
  })
})

describe("micro-batches by token budget", () => {
  it("every sequence exactly once, in order, each batch within the budget unless one sequence alone exceeds it", () => {
    fc.assert(
      // small lengths and budgets, so batches land exactly on the budget often
      fc.property(fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 60 }), fc.integer({ min: 1, max: 20 }), (lengths, budget) => {
        const batches = microBatches(lengths, budget)
        expect(batches.flat()).toEqual(lengths.map((_, i) => i))
        for (const b of batches) {
          const tokens = b.reduce((s, i) => s + lengths[i]!, 0)
          if (b.length > 1) expect(tokens).toBeLessThanOrEqual(budget)
          expect(b.length).toBeGreaterThan(0)
        }
        // greedy: a batch could not have taken the next sequence
        for (let k = 0; k + 1 < batches.length; k++) {
          const tokens = batches[k]!.reduce((s, i) => s + lengths[i]!, 0)
          expect(tokens + lengths[batches[k + 1]![0]!]!).toBeGreaterThan(budget)
        }
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "micro-batches": ${NUM_RUNS} cases`)
    expect(microBatches([3, 3, 4, 9, 1], 6)).toEqual([[0, 1], [2], [3], [4]])
    expect(() => microBatches([3, 0], 10)).toThrow("lengths[1] = 0")
    expect(() => microBatches([3], 0)).toThrow("tokenBudget = 0")
  })
})
